import pytest
from fakes import register_fakes
from vcr.persisters.filesystem import FilesystemPersister

from harness.recording import recording_config, register_matchers

register_fakes()


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache of the synthetic suite's videos for the whole test session.

    It is the `synthetic` folder of a cache root, so code that finds the suite
    through `$VQA_HARNESS_CACHE` can be pointed at it with its parent.
    """
    return tmp_path_factory.mktemp("cache") / "synthetic"


@pytest.fixture(scope="module")
def vcr_config() -> dict:
    """pytest-recording uses the project's redaction and matching."""
    return recording_config()


def pytest_recording_configure(config: pytest.Config, vcr) -> None:
    register_matchers(vcr)
    # pytest-recording 0.14.1 installs a persister that unpacks exactly (requests,
    # responses) and so cannot load cassettes carrying metadata (vcrpy 9.4 returns a
    # third value); ours carry `source`. Its extra-cassette feature is unused here.
    vcr.register_persister(FilesystemPersister)
