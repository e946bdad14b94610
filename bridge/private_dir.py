"""The one check of a directory the bridge keeps things in that others must not read or replace.

Used for the shared bridge's socket directory and for batch result files: a real directory
(not a symbolic link someone planted), of this user, and closed to others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bridge.errors import ConfigError

__all__ = ["check_private_dir"]


def check_private_dir(directory: Path, info: os.stat_result, *, why: str, named: bool = False) -> None:
    """Raise a :class:`ConfigError` saying what to do unless ``info`` (from ``lstat``/``fstat``) is private.

    ``named``: a directory the user chose, which is left as it is: it only must not be writable by others.
    ``why`` ends each message's first sentence: what others could do there.
    """
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
        raise ConfigError(
            f"{directory} is {kind}; {why}. Remove it{'' if named else ' (the bridge creates the directory itself)'}",
            details={"directory": str(directory)},
        )
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"{directory} belongs to another user (uid {info.st_uid}); {why}. "
            "Remove it, or use a directory of your own",
            details={"directory": str(directory)},
        )
    if named and mode & 0o022:
        raise ConfigError(
            f"{directory} can be written by others (mode {mode:o}); {why}. "
            f"Run `chmod go-w {directory}` or name a directory of your own",
            details={"directory": str(directory)},
        )
    if not named and mode & 0o077:
        raise ConfigError(
            f"{directory} is not a private directory of this user (mode {mode:o}); {why}. "
            f"Run `chmod 700 {directory}` if it is yours, or remove it",
            details={"directory": str(directory)},
        )
