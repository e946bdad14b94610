"""Hot reload: poll the config files and report what changed.

Polling (every ~0.2 s, with ``anyio.sleep``) rather than inotify: no extra
dependency, no thread, the same code on every OS and backend, and it sees
files that appear, disappear or are replaced by an editor's atomic rename.
A file is re-parsed only when its mtime, size or content hash changes.

Applying a diff (starting, stopping, restarting children) is the caller's job;
this module only says what changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import anyio
import msgspec

from bridge.children._parse import ServerConfig
from bridge.children.approval import ApprovalRecords
from bridge.children.config import ChildrenConfig, ConfigLoader, ConfigSource

__all__ = ["ConfigDiff", "ConfigUpdate", "ConfigWatcher", "diff_configs", "same_server"]


class ConfigDiff(msgspec.Struct, frozen=True, kw_only=True):
    """How the servers changed between two configurations; names are sorted.

    A server that was disabled or enabled counts as ``changed``; one that
    became skipped or invalid (with no last good definition) counts as ``removed``.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """No server was added, removed or changed."""
        return not (self.added or self.removed or self.changed)


class ConfigUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A new effective configuration and how its servers differ from the previous one."""

    config: ChildrenConfig
    diff: ConfigDiff


def same_server(a: ServerConfig, b: ServerConfig) -> bool:
    """Whether two definitions start the same server: every field but ``source`` is equal."""
    return msgspec.structs.replace(a, source="") == msgspec.structs.replace(b, source="")


def diff_configs(old: ChildrenConfig | None, new: ChildrenConfig) -> ConfigDiff:
    """Compare the servers of two configurations.

    Definitions are compared field by field except ``source``: a definition
    moved unchanged to another file is ``unchanged``, so nothing restarts.
    """
    before = {} if old is None else old.servers
    after = new.servers
    changed: list[str] = []
    unchanged: list[str] = []
    for name in before.keys() & after.keys():
        (unchanged if same_server(before[name], after[name]) else changed).append(name)
    return ConfigDiff(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple(sorted(changed)),
        unchanged=tuple(sorted(unchanged)),
    )


class ConfigWatcher:
    """An async iterator of :class:`ConfigUpdate`, one per change of the effective configuration.

    The first load happens in the constructor (see :attr:`current`); iterating
    then waits for changes. An update is produced whenever the
    :class:`ChildrenConfig` differs, including when only its ``errors`` do (a
    file that stops parsing keeps its last good servers, so the diff is empty,
    but the error must still reach the user). It is a plain object rather than
    an async generator, so abandoning or cancelling an iteration leaks nothing.

    Usage::

        watcher = ConfigWatcher(default_sources(explicit=paths))
        start(watcher.current.enabled())
        async for update in watcher:
            apply(update.diff, update.config)

    Args:
        sources: Candidate files, highest precedence first.
        environ: As for :class:`ConfigLoader`.
        interval: Seconds between polls.
        allow_nested: As for :class:`ConfigLoader`.
        approvals: As for :class:`ConfigLoader`; an approval given while running starts the server.
    """

    def __init__(
        self,
        sources: Sequence[ConfigSource],
        *,
        environ: Mapping[str, str] | None = None,
        interval: float = 0.2,
        allow_nested: bool = False,
        approvals: ApprovalRecords | None = None,
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        self._loader = ConfigLoader(sources, environ=environ, allow_nested=allow_nested, approvals=approvals)
        self._interval = interval
        snapshots = self._loader.snapshot()
        self._fingerprints = [snapshot.fingerprint() for snapshot in snapshots]
        self._current = self._loader.load(snapshots)

    @property
    def current(self) -> ChildrenConfig:
        """The effective configuration as of the last poll that changed it."""
        return self._current

    def __aiter__(self) -> ConfigWatcher:
        return self

    async def __anext__(self) -> ConfigUpdate:
        while True:
            await anyio.sleep(self._interval)
            snapshots = self._loader.snapshot()
            fingerprints = [snapshot.fingerprint() for snapshot in snapshots]
            if fingerprints == self._fingerprints:
                continue
            self._fingerprints = fingerprints
            config = self._loader.load(snapshots)
            if config == self._current:
                continue
            diff = diff_configs(self._current, config)
            self._current = config
            return ConfigUpdate(config=config, diff=diff)
