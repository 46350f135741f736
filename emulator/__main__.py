"""`python -m emulator` (until the lead wires `agent emulator` to `cli.main`)."""

import sys

from emulator.cli import main

sys.exit(main())
