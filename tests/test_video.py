"""harness.media.video: probing, MiniCPM-V 2.6's frame sampling recipe, and unreadable inputs."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from videos import hide_first_frames, index_pattern, read_index, write_audio, write_video

import harness.media.video
from harness.media.video import (
    SampledFrames,
    VideoError,
    VideoInfo,
    probe,
    sample_frames,
    sample_indices,
)


@pytest.fixture(scope="module")
def clip30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s at 30 fps: 300 frames, each showing its index."""
    return write_video(tmp_path_factory.mktemp("clips") / "clip30.mp4", 300, 30)


# --- helpers ------------------------------------------------------------------------


def test_the_index_pattern_reads_back():
    for index in (0, 1, 2, 299, 512, 1023):
        assert read_index(index_pattern(index)) == index


# --- probe --------------------------------------------------------------------------


def test_probe_reports_the_stream(clip30):
    info = probe(clip30)
    assert isinstance(info, VideoInfo)
    assert info.path == str(clip30)
    assert info.duration == pytest.approx(10.0, abs=1e-6)
    assert info.fps == 30.0
    assert info.frame_count == 300
    assert (info.width, info.height) == (160, 96)
    assert info.codec == "h264"
    assert info.rotation == 0
    assert info.to_dict() == {
        "path": str(clip30),
        "duration": info.duration,
        "fps": 30.0,
        "frame_count": 300,
        "width": 160,
        "height": 96,
        "codec": "h264",
        "rotation": 0,
    }


def test_probe_keeps_an_ntsc_rate_exact(tmp_path):
    info = probe(write_video(tmp_path / "ntsc.mp4", 60, Fraction(30000, 1001)))
    assert info.fps == pytest.approx(30000 / 1001)
    assert info.frame_count == 60
    assert info.duration == pytest.approx(60 * 1001 / 30000, abs=1e-3)


def test_probe_counts_packets_when_the_container_stores_no_frame_count(tmp_path):
    info = probe(write_video(tmp_path / "clip.mkv", 50, 25))
    assert info.frame_count == 50
    assert info.fps == 25.0
    assert info.duration == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("counter_clockwise", "expected"), [(-90, 90), (90, 270), (180, 180), (0, 0)]
)
def test_probe_reports_the_clockwise_display_rotation(tmp_path, counter_clockwise, expected):
    path = write_video(tmp_path / "rotated.mp4", 5, 25, rotation=counter_clockwise)
    info = probe(path)
    assert info.rotation == expected
    assert (info.width, info.height) == (160, 96)  # stored size, frames are not rotated


# --- sample_indices: the recipe -------------------------------------------------------


def test_one_frame_per_second_at_30_fps():
    assert sample_indices(300, 30.0) == [0, 30, 60, 90, 120, 150, 180, 210, 240, 270]


def test_more_than_64_seconds_keeps_64_mid_bin_frames():
    # 25 fps x 100 s: 100 one-per-second indices 0, 25, ..., 2475; gap = 100 / 64 = 1.5625,
    # position i takes idx[int(i * 1.5625 + 0.78125)].
    indices = sample_indices(2500, 25.0)
    assert len(indices) == 64
    assert indices[:4] == [0, 50, 75, 125]  # idx[0], idx[2], idx[3], idx[5]
    assert indices[32] == 1250  # idx[int(50.78125)] = idx[50]
    assert indices[-1] == 2475  # idx[int(99.21875)] = idx[99]
    assert indices == sorted(set(indices))


def test_max_frames_mid_bins_by_hand():
    # 100 indices, 8 bins: gap 12.5, int(i * 12.5 + 6.25) for i in 0..7.
    assert sample_indices(100, 1.0, max_frames=8) == [6, 18, 31, 43, 56, 68, 81, 93]


def test_exactly_max_frames_is_kept_whole():
    assert sample_indices(64, 1.0) == list(range(64))
    assert len(sample_indices(65, 1.0)) == 64


def test_ntsc_rate_rounds_to_a_step_of_30():
    assert sample_indices(300, 29.97) == list(range(0, 300, 30))
    assert sample_indices(300, 30000 / 1001) == list(range(0, 300, 30))


def test_python_round_half_to_even_is_kept():
    assert sample_indices(10, 2.5) == [0, 2, 4, 6, 8]  # round(2.5) == 2, as in the recipe
    assert sample_indices(10, 3.5) == [0, 4, 8]  # round(3.5) == 4


def test_two_frames_per_second():
    assert sample_indices(300, 30.0, fps=2) == list(range(0, 300, 15))


def test_fewer_frames_than_one_step():
    assert sample_indices(20, 30.0) == [0]
    assert sample_indices(0, 30.0) == []


def test_step_is_at_least_one():
    assert sample_indices(5, 1.0, fps=10) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fps": 0},
        {"fps": -1.0},
        {"fps": float("nan")},
        {"max_frames": 0},
        {"avg_fps": 0.0},
        {"frame_count": -1},
    ],
)
def test_sample_indices_rejects_bad_arguments(kwargs):
    args = {"frame_count": 100, "avg_fps": 25.0, **kwargs}
    frame_count, avg_fps = args.pop("frame_count"), args.pop("avg_fps")
    with pytest.raises(ValueError):
        sample_indices(frame_count, avg_fps, **args)


# --- sample_frames ------------------------------------------------------------------


def test_sample_frames_returns_exactly_the_sampled_frames(clip30):
    result = sample_frames(clip30)
    assert isinstance(result, SampledFrames)
    assert result.indices == list(range(0, 300, 30))
    assert result.frames.dtype == np.uint8
    assert result.frames.shape == (10, 96, 160, 3)
    assert [read_index(frame) for frame in result.frames] == result.indices


def test_sample_frames_two_per_second(clip30):
    result = sample_frames(clip30, fps=2)
    assert result.indices == list(range(0, 300, 15))
    assert [read_index(frame) for frame in result.frames] == result.indices


def test_sample_frames_mid_bins(tmp_path):
    # 25 fps x 12 s: 12 one-per-second indices; 8 bins of 1.5 -> idx[0, 2, 3, 5, 6, 8, 9, 11].
    path = write_video(tmp_path / "clip25.mp4", 300, 25)
    result = sample_frames(path, max_frames=8)
    assert result.indices == [0, 50, 75, 125, 150, 200, 225, 275]
    assert [read_index(frame) for frame in result.frames] == result.indices


def test_sample_frames_in_presentation_order_with_b_frames(tmp_path):
    path = write_video(
        tmp_path / "bframes.mp4", 120, 10, options={"crf": "10", "preset": "medium", "bf": "3"}
    )
    result = sample_frames(path, fps=5)  # step 2
    assert result.indices == list(range(0, 120, 2))
    assert [read_index(frame) for frame in result.frames] == result.indices


def test_sample_frames_from_matroska(tmp_path):
    path = write_video(tmp_path / "clip.mkv", 90, 30)
    result = sample_frames(path)
    assert result.indices == [0, 30, 60]
    assert [read_index(frame) for frame in result.frames] == [0, 30, 60]


def test_sample_frames_keeps_colours(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]

    def solid(i: int) -> np.ndarray:
        return np.full((64, 64, 3), colours[i // 10], np.uint8)

    path = write_video(tmp_path / "colours.mp4", 40, 10, frame=solid)
    result = sample_frames(path)
    assert result.indices == [0, 10, 20, 30]
    means = result.frames.reshape(4, -1, 3).mean(axis=1)
    np.testing.assert_allclose(means, np.array(colours, float), atol=8)


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"fps": -2.0}, {"max_frames": 0}])
def test_sample_frames_rejects_bad_arguments(clip30, kwargs):
    with pytest.raises(ValueError):
        sample_frames(clip30, **kwargs)


# --- sample_frames against a plain sequential decode -----------------------------------
#
# The reference decodes every frame in order with PyAV's defaults and picks the recipe's
# indices: frame i is the i-th frame decoded, as in decord. The seeking path must return
# the same indices and the same pixels, bit for bit (the same decoder and the same RGB
# conversion leave no room for rounding differences).

BFRAMES = {"crf": "10", "preset": "superfast", "bf": "3"}
NO_BFRAMES = {"crf": "10", "preset": "ultrafast"}  # ultrafast encodes no B-frames


def _gop(options: dict[str, str], frames: int, **x264: str) -> dict[str, str]:
    params = {"keyint": str(frames), "min-keyint": str(frames), "scenecut": "0", **x264}
    return {**options, "x264-params": ":".join(f"{k}={v}" for k, v in params.items())}


def _jittered(i: int) -> int:
    return 4 * i + (i * 7) % 3  # quarter-frame ticks: irregular but increasing


# name -> (frame count at 10 fps, encoder options, write_video keywords, file suffix)
CASES = {
    "2s-gop": (300, _gop(NO_BFRAMES, 20), {}, ".mp4"),
    "10s-gop": (300, _gop(NO_BFRAMES, 100), {}, ".mp4"),
    "2s-gop-bframes": (300, _gop(BFRAMES, 20), {}, ".mp4"),
    "10s-gop-bframes": (300, _gop(BFRAMES, 100), {}, ".mp4"),
    "open-gop-bframes": (300, _gop(BFRAMES, 20, **{"open-gop": "1"}), {}, ".mp4"),
    "100s-64-mid-bins": (1000, _gop(BFRAMES, 20), {}, ".mp4"),
    "vfr-timestamps": (300, _gop(BFRAMES, 20), {"ticks": _jittered}, ".mp4"),
    "matroska-bframes": (300, _gop(BFRAMES, 20), {}, ".mkv"),
}


@pytest.fixture(scope="module")
def identity_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("identity")
    clips = {
        name: write_video(directory / f"{name}{suffix}", count, 10, options=options, **kwargs)
        for name, (count, options, kwargs, suffix) in CASES.items()
    }
    clips["edit-list-hides-5"] = hide_first_frames(
        clips["2s-gop-bframes"], directory / "edit-list.mp4", 5
    )
    return clips


def reference(path: Path, fps: float) -> SampledFrames:
    """The recipe's indices from the container's count and rate, then a plain decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        decoded = list(container.decode(stream))
        count = stream.frames or len(decoded)
    indices = sample_indices(count, rate, fps=fps)
    frames = [decoded[i].to_ndarray(format="rgb24") for i in indices]
    return SampledFrames(np.stack(frames), indices)


@pytest.fixture
def seeking_only(monkeypatch):
    """Fail the test if sample_frames falls back to decoding sequentially."""

    def fail(*args, **kwargs):
        raise AssertionError("fell back to a sequential decode")

    monkeypatch.setattr(harness.media.video, "_decode_sequentially", fail)


@pytest.fixture
def decoded_frames(monkeypatch) -> list[int]:
    """The number of frames the decoder returns during the test, in its only element."""
    count = [0]
    decode = harness.media.video._decode_packet
    lock = threading.Lock()  # sample_frames decodes on several threads

    def counting(codec, packet):
        frames = decode(codec, packet)
        with lock:
            count[0] += len(frames)
        return frames

    monkeypatch.setattr(harness.media.video, "_decode_packet", counting)
    return count


@pytest.mark.parametrize("fps", [1.0, 0.35])  # every 10th frame; every 29th (seeks)
@pytest.mark.parametrize("name", [*CASES, "edit-list-hides-5"])
def test_sample_frames_equals_a_sequential_decode(identity_clips, seeking_only, name, fps):
    path = identity_clips[name]
    expected = reference(path, fps)
    result = sample_frames(path, fps=fps)
    assert result.indices == expected.indices
    assert result.frames.shape == expected.frames.shape
    assert np.array_equal(result.frames, expected.frames)
    shift = 5 if name == "edit-list-hides-5" else 0
    assert [read_index(frame) for frame in result.frames] == [i + shift for i in result.indices]


@pytest.mark.parametrize("cpus", [1, 3, 16])  # one decoder with frame threads; several
def test_any_number_of_decoders_gives_the_same_frames(
    identity_clips, seeking_only, monkeypatch, cpus
):
    path = identity_clips["100s-64-mid-bins"]
    expected = reference(path, 1.0)
    monkeypatch.setattr(harness.media.video, "_cpus", lambda: cpus)
    result = sample_frames(path)
    assert result.indices == expected.indices
    assert np.array_equal(result.frames, expected.frames)


def test_the_edit_list_case_is_a_wrong_container_count(identity_clips):
    path = identity_clips["edit-list-hides-5"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.frames == 300
        assert sum(1 for _ in container.decode(stream)) == 295


def test_a_sampled_frame_past_the_real_end_is_an_error(identity_clips):
    # 300 frames claimed, 295 shown; a step of 11 frames samples index 297.
    path = identity_clips["edit-list-hides-5"]
    with pytest.raises(VideoError) as caught:
        sample_frames(path, fps=10 / 11)
    assert "only 295 of the 300 frames the container claims" in caught.value.problem


def test_the_fallback_decodes_the_same_frames(identity_clips, monkeypatch):
    def inexact(*args, **kwargs):
        raise harness.media.video._Inexact

    monkeypatch.setattr(harness.media.video, "_decode_run", inexact)
    path = identity_clips["vfr-timestamps"]
    expected = reference(path, 1.0)
    result = sample_frames(path)
    assert result.indices == expected.indices
    assert np.array_equal(result.frames, expected.frames)


def test_a_stream_without_timestamps_falls_back_to_a_sequential_decode(tmp_path):
    path = write_video(tmp_path / "raw.h264", 60, 25, options=_gop(BFRAMES, 10))
    result = sample_frames(path, fps=5)
    assert result.indices == list(range(0, 60, 5))
    assert [read_index(frame) for frame in result.frames] == result.indices


def test_sparse_samples_seek_instead_of_decoding_through(tmp_path, seeking_only, decoded_frames):
    # 100 s at 10 fps with a keyframe every 16 frames: 8 of the 100 one-per-second
    # indices, about 125 frames apart. Seeking decodes at most a GOP up to each.
    path = write_video(tmp_path / "sparse.mp4", 1000, 10, options=_gop(NO_BFRAMES, 16))
    result = sample_frames(path, max_frames=8)
    assert [read_index(frame) for frame in result.frames] == result.indices
    assert result.indices[-1] == 930
    assert 8 < decoded_frames[0] <= 8 * 16
    assert decoded_frames[0] < 931 / 5


def test_unsampled_non_reference_frames_are_not_decoded(tmp_path, seeking_only, decoded_frames):
    # One GOP, so no seek helps: everything up to the last sampled frame is decoded
    # except B-frames that no other frame refers to.
    path = write_video(tmp_path / "one-gop.mp4", 300, 10, options=_gop(BFRAMES, 300))
    result = sample_frames(path, fps=1)
    assert [read_index(frame) for frame in result.frames] == result.indices
    assert decoded_frames[0] < 0.8 * (result.indices[-1] + 1)


# --- unreadable input ---------------------------------------------------------------


def _assert_video_error(path: Path, *fragments: str) -> VideoError:
    for read in (probe, sample_frames):
        with pytest.raises(VideoError) as caught:
            read(path)
        error = caught.value
        assert error.path == str(path)
        assert str(error) == f"{path}: {error.problem}"
        for fragment in fragments:
            assert fragment in error.problem
    return error


def test_missing_file(tmp_path):
    _assert_video_error(tmp_path / "nowhere.mp4", "no such file")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    _assert_video_error(path, "empty")


def test_directory(tmp_path):
    _assert_video_error(tmp_path, "not a regular file")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 20)
    _assert_video_error(path, "cannot open as a video", "Invalid data")


@pytest.mark.parametrize(("name", "codec"), [("tone.m4a", "aac"), ("tone.mp4", "mp2")])
def test_audio_only_file(tmp_path, name, codec):
    path = write_audio(tmp_path / name, codec=codec)
    _assert_video_error(path, "no video stream", "audio")


def test_a_codec_without_a_decoder(tmp_path):
    matroska = write_video(tmp_path / "h264.mkv", 10, 10).read_bytes()
    path = tmp_path / "unknown.mkv"  # the codec id renamed, same length: still valid Matroska
    path.write_bytes(matroska.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/QQQ/QQQ"))
    _assert_video_error(path, "no decoder for its video codec")


def _cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def test_truncated_mp4_with_its_index_at_the_end(tmp_path, clip30):
    # The moov box (the index) comes last, so half a file cannot even be opened.
    path = _cut_in_half(clip30, tmp_path / "half.mp4")
    _assert_video_error(path)


def test_truncated_mp4_with_its_index_first_names_the_shortfall(tmp_path):
    whole = write_video(
        tmp_path / "whole.mp4", 300, 30, container_options={"movflags": "+faststart"}
    )
    path = _cut_in_half(whole, tmp_path / "half.mp4")
    assert probe(path).frame_count == 300  # the index still claims every frame
    with pytest.raises(VideoError) as caught:
        sample_frames(path)
    assert caught.value.path == str(path)
    assert "of the 300 frames the container claims" in caught.value.problem
    assert "were not reached" in caught.value.problem


def test_corrupt_data_in_the_middle(tmp_path):
    whole = write_video(
        tmp_path / "whole.mp4", 300, 30, container_options={"movflags": "+faststart"}
    )
    data = bytearray(whole.read_bytes())
    start, end = len(data) * 2 // 5, len(data) * 3 // 5
    assert data.find(b"mdat") < start  # only frame data is overwritten, not the index
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, np.uint8).tobytes()
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    assert probe(path).frame_count == 300  # the header and the first frame are intact
    with pytest.raises(VideoError) as caught:
        sample_frames(path)
    assert caught.value.path == str(path)
    assert "corrupt" in caught.value.problem


def test_truncated_matroska(tmp_path):
    whole = write_video(tmp_path / "whole.mkv", 300, 30)
    path = _cut_in_half(whole, tmp_path / "half.mkv")
    _assert_video_error(path, "truncated")


def test_video_error_text_names_the_file():
    error = VideoError("/data/x.mp4", "no video stream")
    assert (error.path, error.problem, str(error)) == (
        "/data/x.mp4",
        "no video stream",
        "/data/x.mp4: no video stream",
    )
