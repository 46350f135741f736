"""`python -m emulator`: the same command line as `agent emulator` (which forwards here), for
running the emulator without the agent's entry point."""

import sys

from emulator.cli import main

sys.exit(main())
