"""Headless Chromium for checking HTML reports as a browser renders them.

It drives Debian's `chromium` (/usr/bin/chromium) through playwright; no test
ever downloads a browser (`playwright install` is never run). `.ci/run`
installs the package, so a missing browser fails the test. Locally,
`VQA_HARNESS_NO_BROWSER=1` skips these checks instead; CI (where `CI` is set)
never skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
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


def require_chromium() -> None:
    """Skip when explicitly asked to locally; fail, with what to do, when chromium is missing."""
    if os.environ.get("VQA_HARNESS_NO_BROWSER") == "1" and not os.environ.get("CI"):
        pytest.skip("VQA_HARNESS_NO_BROWSER=1: headless browser checks skipped")
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), "
            "or set VQA_HARNESS_NO_BROWSER=1 to skip browser checks on this machine"
        )


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium browser (playwright's `Browser`)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
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
