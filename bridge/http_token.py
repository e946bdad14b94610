"""The bearer token every HTTP request to the bridge must carry: generated once, kept 0600 in the user's config.

``$XDG_CONFIG_HOME/lmstudio-bridge/http-token`` (else ``~/.config/…``): the
bridge and ``lmstudio-bridge token`` read the same file, and a token file that
others may read is refused rather than trusted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from bridge.errors import ConfigError

__all__ = ["http_token", "token_path"]


def token_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "lmstudio-bridge" / "http-token"


def http_token(environ: Mapping[str, str]) -> str:
    """The user's token, created (0600, in a 0700 directory) on first use.

    Raises:
        ConfigError: The file is readable by others, not the user's, or empty.
    """
    path = token_path(environ)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(
            f"the HTTP token file {path} must be a file of this user that only they can read "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}`, or delete it for a new token"
        )
    token = path.read_text().strip()
    if not token:
        raise ConfigError(f"the HTTP token file {path} is empty; delete it and a new token is made")
    return token
