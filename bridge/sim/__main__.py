"""``python -m bridge.sim``: the simulated LM Studio (see :mod:`bridge.sim.cli`)."""

from __future__ import annotations

import sys

from bridge.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
