"""Where a batch too big for one tool result keeps every answer.

Claude Code cuts (or files away) results past about 25,000 tokens, and a batch of hundreds of
answers is past it. The models' work is not thrown away: every item goes, in full and in order,
to a JSON Lines file only this user can read, and the result names it.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec

__all__ = ["default_batch_dir", "write_batch_results"]


def default_batch_dir() -> Path:
    return Path(tempfile.gettempdir()) / "lmstudio-bridge" / "batches"


async def write_batch_results(rows: Sequence[dict[str, Any]], directory: Path) -> Path:
    """Write ``rows`` as JSON Lines to a new file (mode 0600) in ``directory``; return its path."""
    lines = b"".join(msgspec.json.encode(row) + b"\n" for row in rows)
    name = f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
    path = directory / name
    await anyio.to_thread.run_sync(_write_private, path, lines)  # file I/O blocks; keep it off the loop
    return path


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
