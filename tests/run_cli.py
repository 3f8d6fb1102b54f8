"""The vqa-harness CLI with the test doubles registered, for tests that need a real process."""

import sys

from fakes import register_fakes

from harness.cli import entry

register_fakes()
entry(sys.argv[1:])
