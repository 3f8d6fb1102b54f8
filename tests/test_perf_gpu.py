"""perf/gpu.py, the GPU measurement, on the CPU: a tiny smoke run and the not-run report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

# perf/ is not a package: its scripts import each other by name, as they are run.
sys.path.append(str(Path(__file__).resolve().parents[1] / "perf"))

import gpu
import gpu_model


def test_tiny_run_writes_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in path end to end at tiny size: 2 frames of 720p, 4 new tokens."""
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")  # main() sets it: restored after the test
    out = tmp_path / "out"
    assert gpu.main(["--tiny", "--frames", "2", "--new-tokens", "4", "--out", str(out)]) == 0

    text = (out / "results-gpu.md").read_text()
    assert text.startswith("# TINY SMOKE RUN on the CPU: not a measurement")
    assert "stand-in" in text and "Random weights" in text
    for heading in ("## Times", "## Against the physical limit", "## Not measured"):
        assert heading in text
    times = _table_rows(text, "| path |")
    assert len(times) == 1 and times[0][:3] == ["stand-in", "sdpa", "eager"]
    assert times[0][-1] == "—"  # no error
    assert len(_table_rows(text, "| attention (LLM) | prefill FLOPs")) == 1
    assert "flash_attention_2: runs on CUDA only" in text

    results = json.loads((out / "results-gpu.json").read_text())
    assert results["run"] is True and results["tiny"] is True
    (row,) = results["rows"]
    # 2 frames, each the source image and 2 slices of 8 queries plus their markers, and
    # a newline; then the turn markers and the question.
    per_frame = 3 * (gpu_model.TINY.query_num + 2) + 1
    assert row["input_tokens"] == 2 * per_frame + len(gpu_model.prompt_ids([], gpu_model.TINY)[0])
    assert row["decode_steps"] == 3  # 4 tokens: the prefill gives the first
    assert row["preprocess"] > 0 and row["prefill"] > 0 and row["tpot"] > 0
    assert row["vision_layers"] == gpu_model.TINY.vision_layers
    assert row["prefill_flops"] > 0 and "prefill_ratio" not in row  # no limits on a CPU


def test_not_run_without_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path)]) == 0

    text = (tmp_path / "results-gpu.md").read_text()
    assert "not run: CUDA is not available on this machine (torch " in text
    assert "run `nox -s perf -- --gpu` on a CUDA machine" in text
    assert json.loads((tmp_path / "results-gpu.json").read_text())["run"] is False


def test_slicing_of_a_720p_frame() -> None:
    """MiniCPM-V's rule at max_slice_nums=2: the source at about 448², then a 2x1 grid."""
    assert gpu_model.slice_grid(1280, 720, 2, 448) == (2, 1)
    assert gpu_model.slice_grid(720, 1280, 2, 448) == (1, 2)
    assert gpu_model.slice_grid(448, 448, 2, 448) is None
    pieces = gpu_model.slice_image(Image.new("RGB", (1280, 720)), 2, 448, 14)
    assert [piece.size for piece in pieces] == [(602, 336), (420, 476), (420, 476)]
    small = gpu_model.slice_image(Image.new("RGB", (320, 240)), 2, 448, 14)
    assert [piece.size for piece in small] == [(518, 392)]  # upscaled, not sliced


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA GH200 480GB", None),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_gpu_limits_by_name(name: str, known: str | None) -> None:
    limits = gpu.gpu_limits(name)
    assert (limits.gpu if limits else None) == known


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the rows of the Markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows
