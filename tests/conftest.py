import os
import tempfile

# Nothing is downloaded at test time, and the HF caches (hub files, datasets, remote
# code copied by transformers for the MiniCPM-V stand-in) and the harness's own cache
# land in scratch directories, not ~/.cache. Set before anything imports
# huggingface_hub or datasets, which read these variables once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="vqa-harness-hf-")
os.environ["VQA_HARNESS_CACHE"] = tempfile.mkdtemp(prefix="vqa-harness-cache-")

from pathlib import Path

import nltk
import pytest
import tiny_nltk
from fakes import register_fakes
from vcr.persisters.filesystem import FilesystemPersister
from videos import write_video

from backends.standin_model import build_standin
from harness.run.cassettes import recording_config, register_matchers

pytest_plugins = ("pytester",)  # tests/test_browser.py runs pytest on a file of its own

register_fakes()
# NLTK finds only the data a test gives it (`nltk_data`), never a developer's own.
nltk.data.path[:] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need CUDA; without it they are skipped and say why."""
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marker gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache of the synthetic suite's videos for the whole test session.

    It is the `synthetic` folder of a cache root, so code that finds the suite
    through `$VQA_HARNESS_CACHE` can be pointed at it with its parent.
    """
    return tmp_path_factory.mktemp("cache") / "synthetic"


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny MiniCPM-V 2.6 stand-in, as a model directory (read-only for the tests)."""
    return build_standin(tmp_path_factory.mktemp("standin") / "model")


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5 s clip at 10 fps: OpenBMB's recipe samples 5 frames."""
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", 50, fps=10)


@pytest.fixture
def nltk_data(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NLTK's data path holding only the tiny WordNet and tagger of `tiny_nltk`."""
    root = tmp_path_factory.getbasetemp() / "nltk_data"
    monkeypatch.setattr(nltk.data, "path", [str(root)])  # NLTK writes only inside its path
    if not root.exists():
        tiny_nltk.build(root)
    return root


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
