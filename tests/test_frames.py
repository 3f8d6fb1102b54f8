"""The shared frame cache: one decode per video, warmed ahead, a memory bound, failures not
kept."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from videos import write_video

import harness.media.frames
from harness.media.frames import FrameCache
from harness.media.video import VideoError, sample_frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clips")
    return [write_video(directory / f"clip{i}.mp4", 20 + i, fps=10) for i in range(3)]


def test_concurrent_questions_about_one_video_share_one_decode(clips):
    cache = FrameCache(fps=1.0, max_frames=64, max_bytes=2**30)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cache.get(clips[0]), range(8)))
    assert cache.decodes == 1
    assert sum(r.decoded for r in results) == 1
    expected = sample_frames(clips[0])
    for result in results:
        assert result.sampled.indices == expected.indices
        assert np.array_equal(result.sampled.frames, expected.frames)


def test_least_recently_used_videos_leave_first_within_the_bound(clips):
    one_clip = sample_frames(clips[0]).frames.nbytes
    cache = FrameCache(fps=1.0, max_frames=64, max_bytes=int(one_clip * 2.5))
    cache.get(clips[0])
    cache.get(clips[1])
    cache.get(clips[0])  # clip0 is now the most recently used
    cache.get(clips[2])  # over the bound: clip1 leaves
    assert cache.decodes == 3
    assert cache.get(clips[0]).decoded is False
    assert cache.get(clips[1]).decoded is True


def test_a_failed_decode_is_not_kept(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    cache = FrameCache(fps=1.0, max_frames=64, max_bytes=2**30)
    for _ in range(2):
        with pytest.raises(VideoError, match=r"broken\.mp4"):
            cache.get(broken)
    assert cache.decodes == 0


def test_warming_decodes_once_and_never_waits_on_a_decode_in_flight(clips, monkeypatch):
    cache = FrameCache(fps=1.0, max_frames=64, max_bytes=2**30)
    decoding, release = threading.Event(), threading.Event()
    real_sample_frames = harness.media.frames.sample_frames

    def slow_sample_frames(*args, **kwargs):
        decoding.set()
        release.wait(5)
        return real_sample_frames(*args, **kwargs)

    monkeypatch.setattr(harness.media.frames, "sample_frames", slow_sample_frames)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(cache.warm, clips[0])
        assert decoding.wait(5)
        started = time.monotonic()
        cache.warm(clips[0])  # in flight: returns at once instead of waiting
        assert time.monotonic() - started < 1 and not first.done()
        release.set()
        first.result(5)
    monkeypatch.setattr(harness.media.frames, "sample_frames", real_sample_frames)
    cache.warm(clips[0])  # cached: nothing to do
    assert cache.decodes == 1
    result = cache.get(clips[0])
    assert result.decoded is False
    assert result.sampled.indices == sample_frames(clips[0]).indices
