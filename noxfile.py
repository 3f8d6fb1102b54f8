"""Sessions: `tests` (no network, GPU or key needed), `lint`, `bench` (backends side by
side), `perf` (performance measurements into perf/), `record` (re-record cassettes)."""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite: offline, CPU only, no API key."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Every available backend over the synthetic probe suite, then a side-by-side report."""
    session.install("-e", ".")
    session.run("vqa-harness", "bench", *session.posargs)


@nox.session
def perf(session: nox.Session) -> None:
    """Performance measured side by side; writes perf/results.json and perf/results.md."""
    session.install("-e", ".[test]")
    session.run("python", "perf/run.py", *session.posargs)


@nox.session
def record(session: nox.Session) -> None:
    """Re-record the committed fal cassettes: live with FAL_KEY, else against the emulator."""
    session.install("-e", ".[test]")
    session.run("python", "tests/record_fal.py", *session.posargs)
