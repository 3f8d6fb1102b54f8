"""When the browser tests run, skip or fail: wherever chromium is on PATH they run; without
it they are skipped under one line of pytest's summary saying how to run them, except
where `CI` is set, where they fail."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from browser import HOW_TO_RUN, chromium, find_chromium, require_chromium

TESTS = Path(__file__).parent
TWO_BROWSER_TESTS = """
from browser import chromium

def test_one():
    with chromium():
        pass

def test_two():
    with chromium():
        pass
"""


def test_chromium_is_found_on_the_path_it_is_given(tmp_path):
    assert find_chromium(str(tmp_path)) is None
    executable = tmp_path / "chromium"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    assert find_chromium(str(tmp_path)) == executable


def test_a_missing_chromium_skips_saying_how_to_run_the_tests():
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_chromium(None, ci=False)
    assert str(skipped.value) == f"chromium not found on PATH: {HOW_TO_RUN}"
    assert "apt-get install chromium" in str(skipped.value)


def test_a_missing_chromium_fails_under_ci():
    with pytest.raises(pytest.fail.Exception, match="CI requires the browser tests"):
        require_chromium(None, ci=True)


@pytest.mark.parametrize("ci", [False, True])
def test_a_chromium_found_is_used_with_or_without_ci(tmp_path, ci):
    assert require_chromium(tmp_path / "chromium", ci=ci) == tmp_path / "chromium"


@pytest.mark.parametrize(("ci", "outcome"), [(None, pytest.skip), ("true", pytest.fail)])
def test_the_browser_is_looked_for_on_path_and_ci_read_from_the_environment(
    tmp_path, monkeypatch, ci, outcome
):
    monkeypatch.setenv("PATH", str(tmp_path))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome.Exception), chromium():
        pass


@pytest.mark.parametrize("ci", [None, "1"])
def test_without_chromium_pytest_says_so_in_one_line_or_fails_under_ci(pytester, monkeypatch, ci):
    pytester.makepyfile(test_two_browser_tests=TWO_BROWSER_TESTS)
    monkeypatch.setenv("PATH", str(pytester.path))  # no chromium there
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), *sys.path]))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider")
    if ci is None:
        result.assert_outcomes(skipped=2)
        summary = [line for line in result.outlines if line.startswith("SKIPPED")]
        assert len(summary) == 1
        assert summary[0].endswith(f"chromium not found on PATH: {HOW_TO_RUN}")
    else:
        result.assert_outcomes(failed=2)
