"""fal's storage as the backend meets it: multipart uploads, files that expire, the model's
download of `video_url`, and an upload cache that never hands out a deleted file."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from pathlib import Path

import fal_client
import fal_client.client
import httpx
import pytest
from fal_emulator import FalEmulator
from fal_storage import DOWNLOAD_ERROR, FalStorage
from videos import write_video

import backends.fal as fal_module
from backends.fal import UPLOAD_GRACE_S, FalBackend
from backends.uploads import ContentHashes, UploadCache
from harness.types import BackendError, Query

KEY = "test-key-id:test-key-secret"


class Clock:
    """A wall clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def emulator(clock):
    emulator = FalEmulator(reply="B", storage=FalStorage(clock))
    with emulator.installed():
        yield emulator


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    write_video(path, 3, fps=10)
    return path


def backend(tmp_path: Path, **options) -> FalBackend:
    return FalBackend(upload_cache=tmp_path / "uploads.json", poll_interval=0.001, **options)


def ask(fal: FalBackend, video: str, sample: str = "s1"):
    return asyncio.run(fal.answer(Query(sample, video, "What happens?")))


# -- the emulator's storage ------------------------------------------------------------


def test_a_file_past_its_requested_lifetime_is_gone(emulator, clock):
    client = fal_client.SyncClient(key=KEY)
    url = client.upload(b"x" * 100, "video/mp4", "a.mp4", lifecycle=fal_client.StorageSettings(60))
    path = httpx.URL(url).path
    assert emulator.storage.lifecycles[path] == {"expiration_duration_seconds": 60}
    with httpx.Client() as http:
        assert http.get(url).content == b"x" * 100
        clock.now += 59
        assert http.get(url).status_code == 200
        clock.now += 1
        assert http.get(url).status_code == 404
    assert emulator.storage.download(url) == "404 Not Found from the CDN"


def test_a_file_uploaded_without_a_lifetime_is_kept(emulator, clock):
    url = fal_client.SyncClient(key=KEY).upload(b"y" * 10, "video/mp4", "b.mp4")
    clock.now += 10 * 365 * 86400
    assert emulator.storage.download(url) is None


def test_big_files_go_up_in_parts_and_come_back_whole(emulator, monkeypatch, tmp_path):
    monkeypatch.setattr(fal_client.client, "MULTIPART_THRESHOLD", 1000)
    monkeypatch.setattr(fal_client.client, "MULTIPART_CHUNK_SIZE", 400)
    data = os.urandom(2500)
    path = tmp_path / "big.mp4"
    path.write_bytes(data)
    lifecycle = fal_client.StorageSettings(expires_in=120)
    url = asyncio.run(fal_client.AsyncClient(key=KEY).upload_file(path, lifecycle=lifecycle))
    parts = emulator.storage.multipart_parts
    assert sorted(size for _, _, size in parts) == [100, 400, 400, 400, 400, 400, 400]
    assert emulator.storage.lifecycles[httpx.URL(url).path] == {"expiration_duration_seconds": 120}
    with httpx.Client() as http:
        assert http.get(url).content == data


def test_a_multipart_upload_completed_with_a_wrong_etag_is_refused(emulator):
    start = httpx.post(
        "https://v3.fal.media/files/upload/multipart",
        headers={"authorization": "Bearer emulated-cdn-token", "x-fal-file-name": "c.mp4"},
    ).json()
    base = f"{start['access_url']}/multipart/{start['uploadId']}"
    auth = {"authorization": "Bearer emulated-cdn-token"}
    etag = httpx.put(f"{base}/1", content=b"part", headers=auth).headers["etag"]
    refused = httpx.post(
        f"{base}/complete", json={"parts": [{"partNumber": 1, "etag": '"x"'}]}, headers=auth
    )
    assert refused.status_code == 400
    done = httpx.post(
        f"{base}/complete", json={"parts": [{"partNumber": 1, "etag": etag}]}, headers=auth
    )
    assert done.status_code == 200 and httpx.get(start["access_url"]).content == b"part"


@pytest.mark.parametrize(
    ("url", "reads"),
    [
        ("https://example.com/v.mp4", True),
        ("data:video/mp4;base64,AAAA", True),
        ("data:video/mp4;base64,not base64!", False),
        ("http://localhost:8000/v.mp4", False),
        ("http://127.0.0.1/v.mp4", False),
        ("http://192.168.1.20/v.mp4", False),
        ("https://videos.internal/v.mp4", False),
        ("https://v3.fal.media/files/never/uploaded.mp4", False),
        ("ftp://example.com/v.mp4", False),
    ],
)
def test_the_model_reads_what_a_hosted_app_could_reach(url, reads):
    assert (FalStorage().download(url) is None) is reads


# -- the backend against it ----------------------------------------------------------------


def test_an_unreachable_video_url_fails_its_sample_with_fals_download_error(tmp_path, emulator):
    with pytest.raises(BackendError) as failure:
        ask(backend(tmp_path), "http://localhost:8000/clip.mp4")
    assert failure.value.kind == DOWNLOAD_ERROR
    assert "video_url: Failed to download the file" in failure.value.message
    assert failure.value.details["request_id"] in emulator.submitted


def test_uploads_ask_fal_to_keep_files_an_hour_past_the_caches_reuse(tmp_path, emulator, video):
    answer = ask(backend(tmp_path, upload_ttl_hours=2), str(video))
    assert answer.meta["video_input"] == "uploaded"
    (lifecycle,) = emulator.storage.lifecycles.values()
    assert lifecycle == {"expiration_duration_seconds": int(2 * 3600 + UPLOAD_GRACE_S)}


def test_a_deleted_upload_fails_once_then_is_uploaded_again(tmp_path, emulator, video, clock):
    ask(backend(tmp_path), str(video))
    # fal deleted the file early (it was removed by hand, say): the cache still has its URL.
    emulator.storage.files.clear()
    fal = backend(tmp_path)
    with pytest.raises(BackendError) as failure:
        ask(fal, str(video), "s2")
    assert failure.value.kind == DOWNLOAD_ERROR
    assert json.loads((tmp_path / "uploads.json").read_text()) == {}
    again = ask(fal, str(video), "s3")
    assert again.meta["video_input"] == "uploaded" and len(emulator.uploads) == 2


def test_a_big_local_video_is_uploaded_in_parts_and_answered(
    tmp_path, emulator, video, monkeypatch
):
    monkeypatch.setattr(fal_client.client, "MULTIPART_THRESHOLD", 500)
    monkeypatch.setattr(fal_client.client, "MULTIPART_CHUNK_SIZE", 500)
    size = video.stat().st_size
    assert size > 1000
    answer = ask(backend(tmp_path), str(video))
    assert answer.text == "B" and answer.meta["video_input"] == "uploaded"
    assert len(emulator.storage.multipart_parts) == -(-size // 500)
    (url,) = {args["video_url"] for args in emulator.submitted.values()}
    assert emulator.storage.get(httpx.URL(url).path).data == video.read_bytes()


def test_each_local_video_is_hashed_once_per_path_size_and_mtime(tmp_path, emulator, video):
    fal = backend(tmp_path)

    async def questions(count: int):
        return await asyncio.gather(
            *(fal.answer(Query(f"s{i}", str(video), f"Question {i}?")) for i in range(count))
        )

    asyncio.run(questions(5))
    assert fal._hashes.computed == 1
    os.utime(video, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: maybe edited
    asyncio.run(questions(2))
    assert fal._hashes.computed == 2


def test_content_hashes_follow_the_file_not_the_name(tmp_path):
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"one")
    second.write_bytes(b"one")
    hashes = ContentHashes()
    assert hashes.sha256(first) == hashes.sha256(second) == hashes.sha256(first)
    assert hashes.computed == 2
    first.write_bytes(b"two!")  # another size: hashed again
    assert hashes.sha256(first) != hashes.sha256(second)


# -- the upload cache ------------------------------------------------------------------


def cache_with(tmp_path: Path, entry: dict, ttl_s: float = 3600, grace_s: float = 600):
    path = tmp_path / "uploads.json"
    path.write_text(json.dumps({"abc": entry}))
    return UploadCache(path, ttl_s=ttl_s, grace_s=grace_s)


def cached_url(cache: UploadCache) -> str | None:
    async def upload() -> str:
        return "fresh"

    url, uploaded = asyncio.run(cache.url_for("abc", upload))
    return None if uploaded else url


def test_the_cache_hands_out_a_url_only_while_fal_keeps_the_file_a_grace_longer(tmp_path):
    now = time.time()
    fine = {"url": "u", "uploaded_at": now - 60, "expires_at": now + 3600}
    assert cached_url(cache_with(tmp_path, fine)) == "u"
    # Uploaded with a shorter lifetime (an earlier, smaller ttl): too close to deletion.
    short = {"url": "u", "uploaded_at": now - 60, "expires_at": now + 599}
    assert cached_url(cache_with(tmp_path, short)) is None
    old = {"url": "u", "uploaded_at": now - 3601, "expires_at": now + 86400}
    assert cached_url(cache_with(tmp_path, old)) is None


def test_entries_that_do_not_say_when_fal_deletes_the_file_are_not_used(tmp_path):
    legacy = {"url": "u", "uploaded_at": time.time() - 60}  # written before lifetimes were asked
    assert cached_url(cache_with(tmp_path, legacy)) is None


def test_the_expiry_recorded_is_never_later_than_fals(tmp_path, monkeypatch):
    cache = UploadCache(tmp_path / "uploads.json", ttl_s=100, grace_s=50)
    before = time.time()

    async def slow_upload() -> str:
        await asyncio.sleep(0.05)  # fal counts from when it received the file, after `before`
        return "url"

    asyncio.run(cache.url_for("abc", slow_upload))
    entry = json.loads((tmp_path / "uploads.json").read_text())["abc"]
    assert before <= entry["uploaded_at"] and entry["expires_at"] == entry["uploaded_at"] + 150


def test_upload_expiry_is_in_the_manifest(tmp_path):
    described = backend(tmp_path, upload_ttl_hours=1).describe()
    assert described["upload_lifetime_s"] == int(3600 + UPLOAD_GRACE_S)
    assert fal_module.DOWNLOAD_ERROR == DOWNLOAD_ERROR


@pytest.mark.parametrize(
    ("detail", "kind"),
    [
        (
            [
                {
                    "loc": ["body", "video_url"],
                    "msg": "m",
                    "type": DOWNLOAD_ERROR,
                    "url": f"https://docs.fal.ai/errors#{DOWNLOAD_ERROR}",
                }
            ],
            DOWNLOAD_ERROR,
        ),
        # pydantic 2's errors link to its own docs: only malformed input, not a model error
        (
            [
                {
                    "loc": ["body", "prompt"],
                    "msg": "Field required",
                    "type": "missing",
                    "url": "https://errors.pydantic.dev/2.9/v/missing",
                }
            ],
            "validation_error",
        ),
        (
            [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}],
            "validation_error",
        ),
        ("Unprocessable", "validation_error"),
    ],
)
def test_a_model_error_keeps_its_documented_type_as_the_failure_kind(detail, kind):
    response = httpx.Response(
        422, json={"detail": detail}, request=httpx.Request("GET", "https://x")
    )
    error = fal_module._as_backend_error(
        fal_client.FalClientHTTPError(detail, 422, response_headers={}, response=response)
    )
    assert error.kind == kind


def test_uploads_share_one_cdn_client_which_closes_with_the_backend(
    tmp_path, emulator, monkeypatch
):
    # The override rests on fal-client 1.0.x opening its CDN client through `_cdn_client`.
    for method in (fal_client.AsyncClient.upload, fal_client.AsyncClient.upload_file):
        assert "self._cdn_client()" in inspect.getsource(method)
    built = []
    real_init = httpx.AsyncClient.__init__

    def counting_init(self, *args, **kwargs):
        built.append(sorted(kwargs.get("headers", {})))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting_init)
    videos = []
    for index in range(3):
        videos.append(tmp_path / f"clip{index}.mp4")
        write_video(videos[-1], 3 + index, fps=10)
    fal = backend(tmp_path)

    async def ask_and_close():
        for index, video in enumerate(videos):
            await fal.answer(Query(f"s{index}", str(video), "What happens?"))
        shared = fal._client._cdn
        await fal.aclose()
        return shared

    shared = asyncio.run(ask_and_close())
    assert len(emulator.uploads) == 3
    assert built.count(["User-Agent"]) == 1  # one CDN client (fal-client's own has a key too)
    assert shared is not None and shared.is_closed
