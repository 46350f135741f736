"""`python -m agent.emulator` (until the lead wires `agent emulator` to `cli.main`)."""

import sys

from agent.emulator.cli import main

sys.exit(main())
