"""The vqa-harness CLI with the test doubles registered, for tests that need a real process."""

import sys

from fakes import register_fakes

from harness.cli import main

register_fakes()
raise SystemExit(main(sys.argv[1:]))
