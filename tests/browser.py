"""Headless Chromium for checking HTML reports as a browser renders them.

It drives Debian's `chromium`, found on PATH, through playwright; no test ever
downloads a browser (`playwright install` is never run). Without it the browser
tests are skipped, all under one line of pytest's summary saying how to run
them, except where `CI` is set (`.ci/run` sets it and installs the package):
there a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "chromium"  # Debian's package and command
HOW_TO_RUN = f"install Debian's {CHROMIUM} (apt-get install {CHROMIUM}) to run the browser tests"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_SCHEMES = ("file:", "data:")


@dataclass
class Visit:
    """What loading a page produced: console errors, page errors, requests that left it."""

    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)


def find_chromium(search_path: str | None = None) -> Path | None:
    """Chromium's executable on `search_path` (default: PATH), or None."""
    found = shutil.which(CHROMIUM, path=search_path)
    return Path(found) if found else None


def require_chromium(found: Path | None, ci: bool) -> Path:
    """`found`; when it is None, skip the calling test with what to do, or fail it if `ci`."""
    if found is None:
        missing = f"{CHROMIUM} not found on PATH"
        if ci:
            pytest.fail(f"{missing}; CI requires the browser tests: {HOW_TO_RUN}")
        pytest.skip(f"{missing}: {HOW_TO_RUN}")
    return found


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium browser (playwright's `Browser`): see `require_chromium`."""
    executable = require_chromium(find_chromium(), ci=bool(os.environ.get("CI")))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def visit(browser, path: Path) -> Iterator[tuple[object, Visit]]:
    """Open `path` in a new page; every request that is not file: or data: is aborted and kept."""
    seen = Visit()
    page = browser.new_page()

    def console(message) -> None:
        if message.type == "error":
            seen.errors.append(f"console: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda exc: seen.errors.append(f"page: {exc}"))

    def route(route) -> None:
        if route.request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            seen.external.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    try:
        page.goto(path.resolve().as_uri(), wait_until="load")
        yield page, seen
    finally:
        page.close()
