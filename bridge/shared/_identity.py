"""Which shared bridge a relay may use: the one whose settings are its own.

A shared bridge serves only relays that would behave the same alone, so its
name carries the bridge's version and a digest of every setting that shapes
the shared part (servers, limits, budgets, retries, breakers). Settings that
belong to one session (its child servers, its logging) are not in the digest:
each session brings its own.
"""

from __future__ import annotations

import hashlib

import msgspec

from bridge.settings import BridgeSettings

__all__ = ["shared_name", "shared_settings_digest"]

_PER_SESSION = ("children", "log_level", "log_format", "tools")


def shared_settings_digest(settings: BridgeSettings) -> str:
    shared = {k: v for k, v in msgspec.to_builtins(settings).items() if k not in _PER_SESSION}
    encoded = msgspec.json.encode(shared, order="sorted")
    return hashlib.sha256(encoded).hexdigest()[:16]


def shared_name(settings: BridgeSettings, version: str) -> str:
    """``bridge-<version>-<digest>``: short enough for a socket path (108 bytes on Linux)."""
    safe_version = "".join(c if c.isalnum() or c in ".-_" else "_" for c in version)
    return f"bridge-{safe_version}-{shared_settings_digest(settings)}"
