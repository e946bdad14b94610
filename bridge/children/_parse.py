"""Turning one server entry of an ``mcpServers`` object into a :class:`ServerConfig`.

Other tools keep their own keys in the same files, so unknown keys are
ignored; a known key with the wrong type is a :class:`~bridge.errors.ConfigError`
that names the file, the server and the key, because a silently ignored typo
(``"args": "--port 80"``) starts a server that misbehaves much later.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias

import msgspec

from bridge.children._expand import expand_vars
from bridge.errors import ConfigError

__all__ = ["ServerConfig", "Transport", "parse_server"]

Transport: TypeAlias = Literal["stdio", "http", "sse"]

_TRANSPORTS: dict[str, Transport] = {
    "stdio": "stdio",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "sse": "sse",
}


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One child MCP server, as configured (after ``${VAR}`` expansion).

    Compare with ``==`` to see whether a server changed (``env`` and
    ``headers`` are dicts, so instances are not hashable). ``source`` is the
    file the definition came from; :func:`~bridge.children.diff_configs`
    ignores it, so moving an unchanged definition between files restarts nothing.

    Attributes:
        name: The key in ``mcpServers``.
        transport: ``"stdio"``, ``"http"`` (also written ``streamable-http``) or ``"sse"``.
        command: Program to run (stdio only).
        args: Its arguments (stdio only).
        env: Variables set for the child (stdio only), over what it inherits.
        env_passthrough: Names of the bridge's variables the child also inherits (stdio only). A child
            otherwise inherits only the mcp SDK's safe few (``PATH``, ``HOME``, ``USER``, ``SHELL``,
            ``TERM``, ``LOGNAME``), so the bridge's API key and other secrets never reach ``npx``/``uvx``
            code; a name that is not set is left out.
        cwd: Working directory (stdio only); a relative one is resolved against
            the directory of the file that defines the server, ``~`` is expanded.
        url: Endpoint (http and sse only).
        headers: HTTP headers (http and sse only).
        disabled: ``"disabled": true`` in the file: known, but not to be started.
        eager: Start it when the bridge starts, not at first use.
        allow_destructive: Offer the tools it marks ``destructiveHint: true`` to a local model in
            autonomous runs (withheld by default; ``allow_tools`` can also name them per run).
        timeout: Seconds allowed per request, or ``None`` for the bridge default.
        startup_timeout: Seconds allowed to start and initialize, or ``None`` for the default.
        source: Path of the file that defined it.
        inherited_env: The environment the child's inherited variables come from instead of the
            bridge's own (stdio only): a shared bridge gives each session's children that session's.
    """

    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = msgspec.field(default_factory=dict)
    env_passthrough: tuple[str, ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    disabled: bool = False
    eager: bool = False
    allow_destructive: bool = False
    timeout: float | None = None
    startup_timeout: float | None = None
    source: str = ""
    inherited_env: dict[str, str] | None = None


class _Entry:
    """Strictly private: the checks for one raw entry, with the context every error message needs."""

    __slots__ = ("environ", "name", "raw", "source")

    def __init__(self, name: str, raw: dict[str, Any], source: Path, environ: Mapping[str, str]) -> None:
        self.name = name
        self.raw = raw
        self.source = source
        self.environ = environ

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(
            f"{self.source}: server {self.name!r}: key {key!r} {problem}",
            details={"file": str(self.source), "server": self.name, "key": key},
        )

    def expand(self, key: str, value: str) -> str:
        expanded, missing = expand_vars(value, self.environ)
        if missing:
            names = ", ".join(f"${{{name}}}" for name in missing)
            raise ConfigError(
                f"{self.source}: server {self.name!r}: key {key!r} uses {names}, which is not set and has no "
                f"default; set it in the bridge's environment or write ${{{missing[0]}:-default}}",
                details={"file": str(self.source), "server": self.name, "key": key, "variables": missing},
            )
        return expanded

    def string(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_json_type(value)}")
        return self.expand(key, value)

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_json_type(value)}")
        return value

    def seconds(self, key: str) -> float | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number of seconds, not {_json_type(value)}")
        if not math.isfinite(value) or value <= 0:
            raise self.error(key, f"must be a positive number of seconds, not {value}")
        return float(value)

    def _list_of_str(self, key: str, what: str) -> list[str]:
        value = self.raw.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of {what}s, not {_json_type(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{index}]", f"must be a {what}, not {_json_type(item)}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(
            self.expand(f"{key}[{index}]", item) for index, item in enumerate(self._list_of_str(key, "string"))
        )

    def names(self, key: str) -> tuple[str, ...]:
        """Variable names, taken literally: ``${VAR}`` is for values, and a name is not one."""
        names = self._list_of_str(key, "variable name")
        for index, item in enumerate(names):
            if not item or "=" in item or "\0" in item:
                raise self.error(f"{key}[{index}]", f"must be a variable name, not {item!r}")
        return tuple(names)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be an object of strings, not {_json_type(value)}")
        result: dict[str, str] = {}
        for item_key, item in value.items():
            if not isinstance(item, str):
                raise self.error(f"{key}.{item_key}", f"must be a string, not {_json_type(item)}")
            result[item_key] = self.expand(f"{key}.{item_key}", item)
        return result


def parse_server(name: str, raw: object, *, source: Path, environ: Mapping[str, str]) -> ServerConfig:
    """Validate and expand one ``mcpServers`` entry.

    Raises:
        ConfigError: A known key has the wrong type, a required key is
            missing, or ``${VAR}`` names an unset variable without a default.
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: server {name!r} must be an object, not {_json_type(raw)}",
            details={"file": str(source), "server": name},
        )
    entry = _Entry(name, raw, source, environ)
    transport = _transport(entry)
    if transport == "stdio":
        command = entry.string("command")
        if not command:
            raise entry.error("command", "is required for a stdio server (or give a `url` for a remote one)")
        cwd = entry.string("cwd")
        launch = ServerConfig(
            name=name,
            transport=transport,
            command=command,
            args=entry.strings("args"),
            env=entry.mapping("env"),
            env_passthrough=entry.names("env_passthrough"),
            cwd=str(source.parent / os.path.expanduser(cwd)) if cwd else None,
        )
    else:
        url = entry.string("url")
        if not url:
            raise entry.error("url", f"is required for a {transport} server")
        launch = ServerConfig(name=name, transport=transport, url=url, headers=entry.mapping("headers"))
    return msgspec.structs.replace(
        launch,
        disabled=entry.flag("disabled"),
        eager=entry.flag("eager"),
        allow_destructive=entry.flag("allow_destructive"),
        timeout=entry.seconds("timeout"),
        startup_timeout=entry.seconds("startup_timeout"),
        source=str(source),
    )


def _transport(entry: _Entry) -> Transport:
    declared = entry.raw.get("type")
    if declared is None:
        has_command, has_url = "command" in entry.raw, "url" in entry.raw
        if has_command and has_url:
            raise entry.error("type", "is needed: the entry has both `command` and `url`")
        return "http" if has_url else "stdio"
    if not isinstance(declared, str):
        raise entry.error("type", f"must be a string, not {_json_type(declared)}")
    transport = _TRANSPORTS.get(declared.lower())
    if transport is None:
        raise entry.error("type", f"must be one of stdio, http, streamable-http, sse; not {declared!r}")
    return transport


def _json_type(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "an object"
    return type(value).__name__
