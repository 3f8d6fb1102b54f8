import pytest
from fakes import register_fakes

register_fakes()


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache of the synthetic suite's videos for the whole test session."""
    return tmp_path_factory.mktemp("synthetic-cache")
