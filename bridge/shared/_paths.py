"""Where a user's shared bridges live: one private directory, and a socket, lock and log per bridge.

Everything derives from the environment given (``$XDG_RUNTIME_DIR``, else a
directory named for the uid under ``$TMPDIR``), so a test with its own
XDG directories never meets the user's shared bridge. The directory is created
0700 and refused when another user owns it or others may enter it: a socket
there is trusted to be the user's own bridge.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import ConfigError
from bridge.private_dir import check_private_dir

__all__ = ["SharedPaths", "private_runtime_dir", "shared_paths"]


@dataclass(frozen=True, slots=True)
class SharedPaths:
    """The files of one shared bridge, all in the user's private runtime directory."""

    directory: Path
    name: str

    @property
    def socket(self) -> Path:
        return self.directory / f"{self.name}.sock"

    @property
    def lock(self) -> Path:
        return self.directory / f"{self.name}.lock"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"


def private_runtime_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_RUNTIME_DIR/lmstudio-bridge``, else ``$TMPDIR/lmstudio-bridge-<uid>``: created 0700, owner checked.

    Raises:
        ConfigError: The directory belongs to another user or is open to others.
    """
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        directory = Path(runtime) / "lmstudio-bridge"
    else:
        base = environ.get("TMPDIR") or "/tmp"  # tempfile's own default; owner and mode are checked below
        directory = Path(base) / f"lmstudio-bridge-{os.getuid()}"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the shared bridge's directory {directory} ({exc.strerror}); "
            "set XDG_RUNTIME_DIR to a directory of yours"
        ) from exc
    check_private_dir(directory, info, why="the shared bridge's socket there must not be reachable by others")
    return directory


_SOCKET_PATH_LIMIT = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


def shared_paths(name: str, environ: Mapping[str, str]) -> SharedPaths:
    """Raises ``ConfigError`` when the directory is not private, or too deep for a socket path."""
    paths = SharedPaths(private_runtime_dir(environ), name)
    if len(os.fsencode(paths.socket)) > _SOCKET_PATH_LIMIT:
        raise ConfigError(
            f"the shared bridge's socket path {paths.socket} is longer than a Unix socket allows "
            f"({_SOCKET_PATH_LIMIT} bytes); set XDG_RUNTIME_DIR to a shorter directory of yours"
        )
    return paths
