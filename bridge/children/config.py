"""Finding the child MCP servers: Claude Code's ``mcpServers`` files, merged by name.

Files are read highest precedence first (see :func:`default_sources`). Each
server name is decided by the highest-precedence file that mentions it, and
that definition wins *whole*: fields are never mixed across files, and a
broken definition is not silently replaced by a lower file's one (that would
start a different server than the user wrote).

Nothing here raises for a bad file: the bridge must keep serving with the
servers it can use, so problems are collected in :attr:`ChildrenConfig.errors`
(call :meth:`ChildrenConfig.raise_for_errors` for a strict check). A
:class:`ConfigLoader` remembers the last good version of every file and of
every server, so an edit that breaks a file keeps what was running.

Files are small and local, so they are read with plain blocking calls: a
thread per read would cost more than the read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec

from bridge.children._parse import ServerConfig, parse_server
from bridge.children._selfref import PARENT_PID_ENV, nested_parent_pid, self_reference
from bridge.children.approval import ApprovalRecords, ProjectApproval
from bridge.errors import ConfigError


class ConfigSource(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate config file.

    Attributes:
        path: Absolute path.
        origin: Where it came from, for messages: ``"explicit"``,
            ``"$MCP_JSON_PATH"``, ``"project"``, ``"lmstudio"`` or ``"user"``.
        required: A missing file is an error (the user named it) rather than normal.
    """

    path: Path
    origin: str
    required: bool = False

    @property
    def from_project(self) -> bool:
        """A file that came with the directory, not from the user: its servers need approval."""
        return self.origin == "project"


class ChildrenConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The effective child-server configuration.

    Attributes:
        servers: Usable definitions by name, disabled ones included (check
            ``disabled``; :meth:`enabled` filters them).
        skipped: Names deliberately not started, with the reason (the bridge
            itself, or every server when this bridge is nested in another).
        invalid: Names whose winning definition is broken and that have no
            last good definition, with the error.
        needs_approval: Names from a project file that the user has not approved
            (see :mod:`bridge.children.approval`), with how to approve them. They are
            never started, ``eager`` or not.
        origins: The file each skipped or invalid name was defined in, so that a
            listing can say where to fix it.
        errors: Every problem found, as full sentences naming file, server and key.
        sources: The files that exist and were read, highest precedence first.
    """

    servers: dict[str, ServerConfig] = msgspec.field(default_factory=dict)
    skipped: dict[str, str] = msgspec.field(default_factory=dict)
    invalid: dict[str, str] = msgspec.field(default_factory=dict)
    needs_approval: dict[str, str] = msgspec.field(default_factory=dict)
    origins: dict[str, str] = msgspec.field(default_factory=dict)
    errors: tuple[str, ...] = ()
    sources: tuple[Path, ...] = ()

    def enabled(self) -> dict[str, ServerConfig]:
        """The servers that may be started (not ``disabled``)."""
        return {name: server for name, server in self.servers.items() if not server.disabled}

    def raise_for_errors(self) -> None:
        """Raise one :class:`ConfigError` listing every problem, if there is any."""
        if self.errors:
            raise ConfigError(
                f"{len(self.errors)} problem(s) in the MCP server configuration: " + " | ".join(self.errors),
                details={"errors": list(self.errors)},
            )


def default_sources(
    explicit: Sequence[str | os.PathLike[str]] = (),
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
) -> list[ConfigSource]:
    """The candidate files, highest precedence first.

    1. ``explicit`` paths (from the command line or the bridge's TOML), in order;
    2. ``$MCP_JSON_PATH``;
    3. ``./.mcp.json`` (the project file Claude Code reads; its servers need approval);
    4. ``~/.lmstudio/mcp.json`` (LM Studio's own list);
    5. ``~/.mcp.json``.

    Relative paths are taken from ``cwd``; a path listed twice keeps its first place, except
    that ``./.mcp.json`` in the home directory is the user's own ``~/.mcp.json``.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    candidates = [ConfigSource(path=Path(path), origin="explicit", required=True) for path in explicit]
    if environ.get("MCP_JSON_PATH"):
        candidates.append(ConfigSource(path=Path(environ["MCP_JSON_PATH"]), origin="$MCP_JSON_PATH", required=True))
    candidates += [
        ConfigSource(path=Path(".mcp.json"), origin="project"),
        ConfigSource(path=home / ".lmstudio" / "mcp.json", origin="lmstudio"),
        ConfigSource(path=home / ".mcp.json", origin="user"),
    ]
    user_files = {Path(os.path.normpath(cwd / c.path.expanduser())) for c in candidates[-2:]}
    seen: set[Path] = set()
    result: list[ConfigSource] = []
    for candidate in candidates:
        path = Path(os.path.normpath(cwd / candidate.path.expanduser()))
        if candidate.from_project and path in user_files:
            candidate = msgspec.structs.replace(candidate, origin="user")
        if path not in seen:
            seen.add(path)
            result.append(msgspec.structs.replace(candidate, path=path))
    return result


class FileSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One read of a candidate file: what the watcher compares and the loader parses."""

    exists: bool
    data: bytes = b""
    mtime_ns: int = 0
    size: int = 0
    digest: str = ""
    read_error: str | None = None

    @classmethod
    def take(cls, path: Path) -> FileSnapshot:
        try:
            stat = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(exists=False)
        except OSError as exc:
            return cls(exists=True, read_error=f"{path}: cannot be read: {exc.strerror or exc}")
        return cls(
            exists=True,
            data=data,
            mtime_ns=stat.st_mtime_ns,
            size=stat.st_size,
            digest=hashlib.sha256(data).hexdigest(),
        )

    def fingerprint(self) -> tuple[bool, int, int, str, str | None]:
        return (self.exists, self.mtime_ns, self.size, self.digest, self.read_error)


class _FileResult(msgspec.Struct, frozen=True, kw_only=True):
    """Strictly private: what one file contributes, before merging."""

    source: ConfigSource
    exists: bool
    broken: bool = False
    order: tuple[str, ...] = ()
    servers: dict[str, ServerConfig] = msgspec.field(default_factory=dict)
    skipped: dict[str, str] = msgspec.field(default_factory=dict)
    invalid: dict[str, str] = msgspec.field(default_factory=dict)
    errors: tuple[str, ...] = ()


def _parse_file(source: ConfigSource, snapshot: FileSnapshot, environ: Mapping[str, str]) -> _FileResult:
    path = source.path
    if not snapshot.exists:
        if source.required:
            error = f"{path}: config file ({source.origin}) does not exist"
            return _FileResult(source=source, exists=False, broken=True, errors=(error,))
        return _FileResult(source=source, exists=False)
    if snapshot.read_error is not None:
        return _FileResult(source=source, exists=True, broken=True, errors=(snapshot.read_error,))
    try:
        document = msgspec.json.decode(snapshot.data)
    except msgspec.DecodeError as exc:
        return _FileResult(source=source, exists=True, broken=True, errors=(f"{path}: not valid JSON: {exc}",))
    if not isinstance(document, dict):
        error = f"{path}: the top level must be an object with an `mcpServers` key"
        return _FileResult(source=source, exists=True, broken=True, errors=(error,))
    entries = document.get("mcpServers", {})
    if not isinstance(entries, dict):
        error = f"{path}: key 'mcpServers' must be an object mapping server names to definitions"
        return _FileResult(source=source, exists=True, broken=True, errors=(error,))
    servers: dict[str, ServerConfig] = {}
    skipped: dict[str, str] = {}
    invalid: dict[str, str] = {}
    for name, raw in entries.items():
        try:
            server = parse_server(name, raw, source=path, environ=environ)
        except ConfigError as exc:
            invalid[name] = exc.message
            continue
        reason = self_reference(server.command, server.args) if server.command else None
        if reason is not None:
            skipped[name] = f"server {name!r} in {path} is lmstudio-bridge itself: {reason}"
        else:
            servers[name] = server
    return _FileResult(
        source=source,
        exists=True,
        order=tuple(entries),
        servers=servers,
        skipped=skipped,
        invalid=invalid,
        errors=tuple(invalid.values()),
    )


def _keep_last_good(new: _FileResult, good: _FileResult | None) -> _FileResult:
    """Fall back to the last good file, or the last good definition of each broken server."""
    if good is None:
        return new
    if new.broken:
        note = f"{new.source.path}: keeping its last good configuration until the file is fixed"
        return msgspec.structs.replace(good, errors=(*new.errors, note))
    if not (new.invalid.keys() & good.servers.keys()):
        return new
    servers = dict(new.servers)
    invalid = dict(new.invalid)
    errors = list(new.errors)
    for name in new.invalid.keys() & good.servers.keys():
        servers[name] = good.servers[name]
        del invalid[name]
        errors.append(f"{new.source.path}: server {name!r}: keeping its last good definition until it is fixed")
    return msgspec.structs.replace(new, servers=servers, invalid=invalid, errors=tuple(errors))


def _merge(
    results: Sequence[_FileResult], nested_in: int | None, approval: Callable[[Path], ProjectApproval]
) -> ChildrenConfig:
    servers: dict[str, ServerConfig] = {}
    skipped: dict[str, str] = {}
    invalid: dict[str, str] = {}
    needs_approval: dict[str, str] = {}
    origins: dict[str, str] = {}
    decided: set[str] = set()
    for result in results:
        for name in result.order:
            if name in decided:
                continue
            decided.add(name)
            path = result.source.path
            from_project = result.source.from_project and name in result.servers
            refusal = approval(path.parent).refusal(name, path) if from_project else None
            if refusal is not None:
                needs_approval[name] = refusal
                origins[name] = str(path)
            elif name in result.servers:
                servers[name] = result.servers[name]
            elif name in result.skipped:
                skipped[name] = result.skipped[name]
                origins[name] = str(result.source.path)
            elif name in result.invalid:
                invalid[name] = result.invalid[name]
                origins[name] = str(result.source.path)
    if nested_in is not None:
        for name, server in servers.items():
            origins[name] = server.source
            skipped[name] = (
                f"this bridge was started by another lmstudio-bridge (pid {nested_in}, per ${PARENT_PID_ENV}), "
                f"and a nested bridge starts no child servers so that it can never start itself"
            )
        servers = {}
    return ChildrenConfig(
        servers=servers,
        skipped=skipped,
        invalid=invalid,
        needs_approval=needs_approval,
        origins=origins,
        errors=tuple(error for result in results for error in result.errors),
        sources=tuple(result.source.path for result in results if result.exists),
    )


class ConfigLoader:
    """Loads the effective configuration, remembering the last good version of each file.

    Args:
        sources: Candidate files, highest precedence first (see :func:`default_sources`).
        environ: Variables for ``${VAR}`` expansion and the nesting marker;
            defaults to ``os.environ`` as it is at each load.
        allow_nested: Start children even when :data:`PARENT_PID_ENV` says a
            live bridge started this one. Off by default: that is the only guard
            against a self-reference the command-line patterns did not catch.
        approvals: Where the user's approvals of project servers are read; by default
            none are, so no server of a project file starts.
    """

    def __init__(
        self,
        sources: Sequence[ConfigSource],
        *,
        environ: Mapping[str, str] | None = None,
        allow_nested: bool = False,
        approvals: ApprovalRecords | None = None,
    ) -> None:
        self.sources = tuple(sources)
        self._environ = environ
        self._allow_nested = allow_nested
        self._approvals = ApprovalRecords() if approvals is None else approvals
        self._last_good: dict[Path, _FileResult] = {}

    def snapshot(self) -> list[FileSnapshot]:
        """Read every candidate file once, then the approval records if a project file exists.

        The records (Claude Code's config is rewritten often and can be large) are read only
        when there is something to approve; a change in them counts as a change of the files.
        """
        snapshots = [FileSnapshot.take(source.path) for source in self.sources]
        needed = any(s.exists for s, source in zip(snapshots, self.sources, strict=True) if source.from_project)
        for path in self._approvals.files:
            snapshots.append(FileSnapshot.take(path) if needed else FileSnapshot(exists=False))
        return snapshots

    def load(self, snapshots: Sequence[FileSnapshot] | None = None) -> ChildrenConfig:
        """Parse the files (from ``snapshots`` if given, else read now) and merge them by server name."""
        environ = os.environ if self._environ is None else self._environ
        if snapshots is None:
            snapshots = self.snapshot()
        records = [s.data if s.exists and s.read_error is None else None for s in snapshots[len(self.sources) :]]
        records += [None] * (len(self._approvals.files) - len(records))

        approvals: dict[Path, ProjectApproval] = {}

        def approval(project_dir: Path) -> ProjectApproval:
            if project_dir not in approvals:
                approvals[project_dir] = self._approvals.read(project_dir, records)
            return approvals[project_dir]

        results = []
        for source, snapshot in zip(self.sources, snapshots[: len(self.sources)], strict=True):
            result = _keep_last_good(_parse_file(source, snapshot, environ), self._last_good.get(source.path))
            if result.exists and not result.broken:
                self._last_good[source.path] = result
            elif not result.exists:
                self._last_good.pop(source.path, None)
            results.append(result)
        nested_in = None if self._allow_nested else nested_parent_pid(environ)
        return _merge(results, nested_in, approval)


def load_children_config(
    sources: Sequence[ConfigSource] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    allow_nested: bool = False,
    approvals: ApprovalRecords | None = None,
) -> ChildrenConfig:
    """Load the effective configuration once (``sources`` default to :func:`default_sources`)."""
    if sources is None:
        sources = default_sources(environ=environ)
    return ConfigLoader(sources, environ=environ, allow_nested=allow_nested, approvals=approvals).load()
