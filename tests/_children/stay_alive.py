"""A child MCP server that outlives its stdin: only a signal to its whole group stops it.

Usage: ``stay_alive.py MARKER [--ignore-term] [--mute]``. It starts a grandchild in its own process group
(as ``npx`` or a shell script would), writes ``MARKER`` (``pid pgid grandchild_pid``, renamed
into place so a reader never sees half of it), answers ``initialize``, ``tools/list`` and
``ping`` by hand (no SDK import: it is ready at once), and when stdin closes keeps running.
With ``--ignore-term`` the leader ignores SIGTERM too, so only SIGKILL ends it. With ``--mute`` it
answers nothing, so its session stays in start-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def answer(request: dict[str, object]) -> dict[str, object] | None:
    method = request.get("method")
    if "id" not in request:
        return None
    if method == "initialize":
        params = request.get("params")
        version = params.get("protocolVersion") if isinstance(params, dict) else None
        result: dict[str, object] = {
            "protocolVersion": version or "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stay_alive", "version": "0"},
        }
    elif method == "tools/list":
        result = {"tools": []}
    else:
        result = {}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def main() -> None:
    marker = sys.argv[1]
    if "--ignore-term" in sys.argv[2:]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    partial = f"{marker}.part"
    with open(partial, "w", encoding="utf-8") as out:
        out.write(f"{os.getpid()} {os.getpgid(0)} {grandchild.pid}\n")
    os.replace(partial, marker)
    mute = "--mute" in sys.argv[2:]
    for line in sys.stdin:
        if mute:
            continue
        try:
            reply = answer(json.loads(line))
        except ValueError:
            continue
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    sys.stderr.write("stay_alive: stdin closed, staying alive anyway\n")
    sys.stderr.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
