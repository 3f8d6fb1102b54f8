"""Sessions: `tests` (no network, GPU or key needed), `lint`, `bench` (backends side by
side), `perf` (performance measurements into perf/), `record` (re-record cassettes)."""

import nox

# The CPU build of torch 2.13.0 lies on the CI machines' disk; asking for it by
# version keeps pip from pulling a multi-GB CUDA build of the newest torch.
TORCH = "torch==2.13.0"

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"


def install(session: nox.Session, extras: str) -> None:
    """The project with `extras`, torch first where they pull it in."""
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite: offline, CPU only, no API key."""
    install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, then mypy over harness, backends and benchmarks (with the project installed)."""
    install(session, "local,lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Every available backend over the synthetic probe suite, then a side-by-side report.

    `local` runs MiniCPM-V 2.6 when CUDA and its weights are here; otherwise (`--demo`) a
    tiny random-weight stand-in of it on the CPU, and the report says so.
    """
    install(session, "local")
    session.run("vqa-harness", "bench", "--demo", *session.posargs)


@nox.session
def perf(session: nox.Session) -> None:
    """Performance measured side by side; writes perf/results.json and perf/results.md.

    `-- --gpu` runs perf/gpu.py instead (MiniCPM-V 2.6 at full size, random weights, on
    one GPU; perf/results-gpu.md), passing it the other arguments.
    """
    install(session, "test")
    if "--gpu" in session.posargs:
        args = [arg for arg in session.posargs if arg != "--gpu"]
        session.run("python", "perf/gpu.py", *args)
        return
    # decord runs OpenBMB's reference recipe for comparison; it is not a dependency of
    # the project or of the tests, only of perf/run.py.
    session.install("decord==0.6.0")
    session.run("python", "perf/run.py", *session.posargs)


@nox.session
def record(session: nox.Session) -> None:
    """Re-record the committed fal cassettes and the replay baseline: live with FAL_KEY, else
    against the emulator; and the openai backend's replay set, against the vLLM emulator."""
    install(session, "test")
    session.run("python", "tests/record_fal.py", *session.posargs)
    session.run("python", "tests/record_openai.py")
