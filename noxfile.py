"""Sessions: `tests` (no network, GPU or key needed), `lint`, `bench` (backends side by side)."""

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
