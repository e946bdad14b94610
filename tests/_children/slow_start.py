"""The echo server, after sleeping N seconds (``argv[1]``, default 1) before it serves anything."""

from __future__ import annotations

import sys
import time

if __name__ == "__main__":
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    sys.argv[1:] = []
    from echo_server import main  # the script's directory is on sys.path

    main()
