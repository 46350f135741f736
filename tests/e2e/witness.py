"""`python -m tests.e2e.witness ARGS` = `python -m emulator ARGS` under a different process name.

On a shared development machine, stopping emulators by process name (`pkill -f emulator`)
also kills the ones these proofs run (seen as ClientConnectorError in the agent).
Running the very same emulator entry point under this name keeps the proofs independent of that.
"""

from __future__ import annotations

import sys

from emulator.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
