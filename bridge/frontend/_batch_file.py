"""Where a batch too big for one tool result keeps every answer.

Claude Code cuts (or files away) results past about 25,000 tokens, and a batch of hundreds of
answers is past it. The models' work is not thrown away: every item goes, in full and in order,
to a JSON Lines file only this user can read, and the result names it.

The files live in the user's state directory, not under ``$TMPDIR``: a shared temporary path can
be created first by another user (who would then read or swap the answers), and
``$XDG_RUNTIME_DIR`` is wiped on logout, before the user may have read them. Each write removes
old ``batch-*.jsonl`` files, so the directory does not grow without bound.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec

from bridge.private_dir import check_private_dir

__all__ = ["MAX_BATCH_FILES", "MAX_BATCH_FILE_AGE", "default_batch_dir", "write_batch_results"]

log = logging.getLogger(__name__)

MAX_BATCH_FILE_AGE = 7 * 24 * 3600.0
"""Seconds a results file is kept: long enough to come back to, short enough not to pile up."""

MAX_BATCH_FILES = 200
"""Results files kept at most in the directory (the newest), whatever their age."""

_WHY = "others could read or replace the batch results written there"
_PATTERN = "batch-*.jsonl"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def default_batch_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/lmstudio-bridge/batches``, else ``~/.local/state/lmstudio-bridge/batches``."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the XDG spec says to ignore a relative one
        state = str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state) / "lmstudio-bridge" / "batches"


async def write_batch_results(
    rows: Sequence[dict[str, Any]],
    directory: Path,
    *,
    max_age: float = MAX_BATCH_FILE_AGE,
    max_files: int = MAX_BATCH_FILES,
) -> Path:
    """Write ``rows`` as JSON Lines to a new file (mode 0600) in ``directory``; return its path.

    The default directory (and its ``lmstudio-bridge`` parent) is created 0700 and must stay private;
    a directory the caller named is created 0700 if missing, and is otherwise left as it is but must
    be a real directory of this user that nobody else can write to. Older ``batch-*.jsonl`` files
    beyond ``max_age`` seconds or the newest ``max_files`` are removed.

    Raises:
        ConfigError: The directory is a symlink, another user's, or open to others.
        OSError: The file could not be written.
    """
    lines = b"".join(msgspec.json.encode(row) + b"\n" for row in rows)
    name = f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
    # File I/O blocks; keep it off the loop.
    await anyio.to_thread.run_sync(_write_private, directory, name, lines, max_age, max_files)
    return directory / name


def _write_private(directory: Path, name: str, data: bytes, max_age: float, max_files: int) -> None:
    own = directory == default_batch_dir()
    if own:
        directory.parent.parent.mkdir(parents=True, exist_ok=True)
        _make_private(directory.parent)
        _make_private(directory)
    else:
        _make_private(directory, named=True)
    # Opened without following a link and checked again: the directory checked is the one written to.
    dir_fd = os.open(directory, _DIR_FLAGS)
    try:
        check_private_dir(directory, os.fstat(dir_fd), why=_WHY, named=not own)
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        _prune(dir_fd, directory, keep=name, max_age=max_age, max_files=max_files)
    finally:
        os.close(dir_fd)


def _make_private(directory: Path, *, named: bool = False) -> None:
    with contextlib.suppress(FileExistsError):  # checked below, whatever it is
        directory.mkdir(mode=0o700, parents=named)
    check_private_dir(directory, os.lstat(directory), why=_WHY, named=named)


def _prune(dir_fd: int, directory: Path, *, keep: str, max_age: float, max_files: int) -> None:
    """Remove old results; a file that cannot be removed is logged, never a reason to fail the batch."""
    now = time.time()
    found: list[tuple[float, str]] = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if entry.name == keep or not fnmatch.fnmatchcase(entry.name, _PATTERN):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
            except FileNotFoundError:
                continue  # another bridge pruned it
    found.sort(reverse=True)  # newest first
    for index, (mtime, name) in enumerate(found):
        if index + 1 < max_files and now - mtime <= max_age:  # the new file takes one of the places
            continue
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            continue  # another bridge pruned it
        except OSError as exc:
            log.warning("could not remove the old batch results %s: %s", directory / name, exc)
