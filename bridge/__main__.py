"""``python -m bridge`` is ``lmstudio-bridge``."""

from bridge.cli import main

raise SystemExit(main())
