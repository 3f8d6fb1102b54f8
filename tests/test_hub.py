"""The Hub access layer against the Hub emulator: annotations, files, zip members by range."""

from __future__ import annotations

import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_emulator import HubEmulator
from huggingface_hub import constants

from benchmarks.hub import HubDataset, HubError
from harness.hub import HubAccessError

REPO = "lab/tiny-videos"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "repo"
    (folder / "data").mkdir(parents=True)
    table = pa.table({"id": ["a", "b"], "question": ["Q1?", "Q2?"], "answer": ["x", "y"]})
    pq.write_table(table, folder / "data" / "test-00000-of-00001.parquet")
    (folder / "clip.mp4").write_bytes(b"\x00" * 3000)
    with zipfile.ZipFile(folder / "videos.zip", "w", zipfile.ZIP_STORED) as archive:
        for i in range(20):
            archive.writestr(f"videos/{i:02d}.mp4", bytes([i]) * 200_000)
    emulator = HubEmulator({REPO: folder})
    with emulator.installed():
        yield emulator


def test_annotations_load_with_datasets(repo):
    rows = HubDataset(REPO).annotations(split="test")
    assert rows["id"] == ["a", "b"] and rows["question"] == ["Q1?", "Q2?"]


def test_a_file_downloads_into_the_hf_cache_once(repo):
    hub = HubDataset(REPO)
    first = hub.file("clip.mp4")
    assert first.read_bytes() == b"\x00" * 3000 and "datasets--lab--tiny-videos" in str(first)
    served = repo.bytes_served["clip.mp4"]
    assert hub.file("clip.mp4") == first
    assert repo.bytes_served["clip.mp4"] == served == 3000


def test_a_zip_member_is_read_by_range_without_the_rest_of_the_zip(repo):
    hub = HubDataset(REPO, block_size=64 * 1024)
    assert hub.zip_members("videos.zip")[:2] == ["videos/00.mp4", "videos/01.mp4"]
    path = hub.zip_member("videos.zip", "videos/07.mp4")
    assert path.read_bytes() == bytes([7]) * 200_000
    total = (20 * 200_000) + 20 * 100  # the zip is about 4 MB
    assert repo.bytes_served["videos.zip"] < total / 4  # one member and the directory
    read = repo.bytes_served["videos.zip"]
    assert hub.zip_member("videos.zip", "videos/07.mp4") == path  # kept: no new reads
    assert repo.bytes_served["videos.zip"] == read


def test_missing_things_are_clear_errors(repo):
    with pytest.raises(HubError, match=r"nope\.mp4"):
        HubDataset(REPO).file("nope.mp4")
    with pytest.raises(HubError, match=r"videos/99\.mp4"):
        HubDataset(REPO).zip_member("videos.zip", "videos/99.mp4")
    with pytest.raises(HubAccessError, match="dataset lab/absent is not on the Hugging Face Hub"):
        HubDataset("lab/absent").annotations(split="test")


def test_the_commit_is_asked_of_the_hub_or_read_from_the_hf_cache_offline(repo, monkeypatch):
    assert HubDataset(REPO).commit() == repo.sha(REPO)
    pinned = "0123456789abcdef0123456789abcdef01234567"
    assert HubDataset(REPO, pinned).commit() == pinned
    with pytest.raises(HubAccessError, match="lab/absent"):  # asked, and it is not there
        HubDataset("lab/absent").commit()
    HubDataset(REPO).file("clip.mp4")  # a download leaves refs/main in the HF cache
    asked = len(repo.requests)
    # Undone here, inside the emulator: undone at teardown, after the emulator restored
    # the tests' offline mode, it would leave the rest of the session online.
    with monkeypatch.context() as offline:
        offline.setattr(constants, "HF_HUB_OFFLINE", True)
        assert HubDataset(REPO).commit() == repo.sha(REPO)
        assert HubDataset(REPO, "v2").commit() is None  # never fetched
    assert len(repo.requests) == asked
