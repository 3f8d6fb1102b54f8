"""The README's quick starts, run as written: each block's commands in order, in a
fresh directory, with the install lines checked against the project instead of run
(nothing is downloaded at test time). `nox -s bench`, quick start 1, is run by
`.ci/run` itself."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from fal_emulator import FalEmulator
from test_videomme import hub, repo_folder  # noqa: F401 (fixtures)
from videos import write_video

from backends import standin_model
from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
INSTALLS = ("pip install ", "huggingface-cli download ")
"""Lines not run: they download. `pip install` lines are checked against pyproject."""


def quick_start(number: int) -> list[str]:
    """The commands of quick start `number`, continuation lines joined; a heredoc
    (`cat > FILE <<'EOF'` .. `EOF`) is one command holding its lines."""
    section = README.split(f"\n### {number}. ", 1)[1].split("\n### ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    commands: list[str] = []
    lines = iter(block.replace("\\\n", " ").splitlines())
    for line in lines:
        if line.startswith("cat > "):
            body = []
            for more in lines:
                if more == "EOF":
                    break
                body.append(more)
            line += "\n" + "\n".join(body)
        commands.append(line)
    return commands


def run_commands(commands: list[str], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Run the commands here: `vqa-harness` in process; the exit status of each."""
    statuses = []
    for command in commands:
        if command.startswith(INSTALLS):
            check_install(command)
        elif command.startswith("export "):
            name, value = command.removeprefix("export ").split("=", 1)
            monkeypatch.setenv(name, value)
        elif command.startswith("cat > "):
            head, body = command.split("\n", 1)
            Path(re.match(r"cat > (\S+) <<'EOF'", head)[1]).write_text(body + "\n")
        elif command.startswith("python -m backends.standin_model "):
            standin_model.main(shlex.split(command)[3:])
        elif command.startswith("vqa-harness "):
            statuses.append(main(shlex.split(command)[1:]))
        else:
            raise AssertionError(f"a README command this test cannot run: {command}")
    return statuses


def check_install(command: str) -> None:
    """A `pip install` of the checkout names only extras the project defines."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for target in shlex.split(command)[2:]:
        if target.startswith(".["):
            assert set(target[2:-1].split(",")) <= set(extras), command


def test_quick_start_2_runs_your_own_videos_on_the_demo_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    for name in ("kitchen", "street"):  # the clips the README's question file names
        write_video(tmp_path / "clips" / f"{name}.mp4", 20, fps=10)
    assert run_commands(quick_start(2), monkeypatch) == [0, 0]
    report = (tmp_path / "runs" / "mine" / "report.md").read_text()
    assert "stand-in model with random weights" in report
    assert "2 samples" in report and "## Failures (0," in report
    manifest = (tmp_path / "runs" / "mine" / "manifest.json").read_text()
    assert '"max_new_tokens": 16' in manifest


def test_quick_start_3_runs_the_hosted_endpoint_with_a_key(tmp_path, monkeypatch, synthetic_cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VQA_HARNESS_CACHE", str(synthetic_cache.parent))
    with FalEmulator(reply="The answer is B.").installed() as emulator:
        assert run_commands(quick_start(3), monkeypatch) == [0, 0]
    assert len(emulator.submitted) == 20
    report = (tmp_path / "runs" / "fal-probe" / "report.md").read_text()
    assert "backend `fal`" in report and "20 samples" in report


def test_quick_start_4_says_in_one_line_what_the_real_model_lacks(
    hub,  # noqa: F811 (the Video-MME fixture repo, served by the Hub emulator)
    tmp_path,
    monkeypatch,
    capsys,
):
    monkeypatch.chdir(tmp_path)
    commands = quick_start(4)
    assert run_commands(commands[:-1], monkeypatch) == [2]
    # The Hub emulator serves the dataset but not the model: the weights cannot be had.
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("vqa-harness:")]
    assert line.startswith("vqa-harness: error: backend 'local': model openbmb/MiniCPM-V-2_6")
    assert "huggingface-cli login" in line
    assert not (tmp_path / "runs" / "videomme-300" / "records.jsonl").exists()
