"""Which servers of a project's ``.mcp.json`` the user approved.

A project file comes with whatever repository the bridge runs in, and a local
model with a filesystem tool can write one: its servers must not start because
the file exists. Claude Code asks the user once per project and records the
answer; the bridge reads that record (never writes it) and its own list:

* ``[children] approved_project_servers`` in the bridge's TOML (user-level);
* Claude Code's global config, ``~/.claude.json`` (``$CLAUDE_CONFIG_DIR/.claude.json``):
  ``projects["<project dir>"]`` with ``enabledMcpjsonServers``,
  ``disabledMcpjsonServers`` and ``enableAllProjectMcpServers``;
* Claude Code's user settings, ``~/.claude/settings.json``
  (``$CLAUDE_CONFIG_DIR/settings.json``): the same three keys, for every project.

A name in a ``disabledMcpjsonServers`` list is refused whatever else says yes.
The project's own ``.claude/settings*.json`` are not read: they are files of the
same project, as easy to ship or write as its ``.mcp.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["ApprovalRecords", "ProjectApproval", "claude_code_records"]


class ApprovalRecords(msgspec.Struct, frozen=True, kw_only=True):
    """Where approvals are read: the bridge's own list and Claude Code's two files.

    Attributes:
        approved: Server names the bridge's configuration approves for every project.
        claude_config: Claude Code's global config (per-project records).
        claude_settings: Claude Code's user settings (records for every project).
        bridge_config: The bridge's TOML, named in the how-to-approve message.
    """

    approved: frozenset[str] = frozenset()
    claude_config: Path | None = None
    claude_settings: Path | None = None
    bridge_config: str = "~/.config/lmstudio-bridge/config.toml"

    @property
    def files(self) -> tuple[Path, ...]:
        """Claude Code's files, in the order :meth:`read` takes their contents."""
        return tuple(path for path in (self.claude_config, self.claude_settings) if path is not None)

    def read(self, project_dir: Path, contents: Sequence[bytes | None]) -> ProjectApproval:
        """The approval for ``project_dir``, from the contents of :attr:`files` (``None``: missing)."""
        found = dict(zip(self.files, contents, strict=True))
        records: list[Mapping[str, Any]] = []
        if self.claude_config is not None:
            projects = _object(_decoded(found.get(self.claude_config)).get("projects"))
            for key in _project_keys(project_dir):
                if key in projects:
                    records.append(_object(projects[key]))
                    break
        if self.claude_settings is not None:
            records.append(_decoded(found.get(self.claude_settings)))
        return ProjectApproval(
            project_dir=project_dir,
            by_bridge=self.approved,
            enabled=frozenset(name for record in records for name in _names(record, "enabledMcpjsonServers")),
            disabled=frozenset(name for record in records for name in _names(record, "disabledMcpjsonServers")),
            all_enabled=any(record.get("enableAllProjectMcpServers") is True for record in records),
            bridge_config=self.bridge_config,
        )


class ProjectApproval(msgspec.Struct, frozen=True, kw_only=True):
    """What the user said about one project's servers."""

    project_dir: Path
    by_bridge: frozenset[str] = frozenset()
    enabled: frozenset[str] = frozenset()
    disabled: frozenset[str] = frozenset()
    all_enabled: bool = False
    bridge_config: str = ""

    def refusal(self, name: str, source: Path) -> str | None:
        """``None`` when server ``name`` may start; else why not and how to approve it."""
        if name in self.disabled:
            return (
                f"server {name!r} of the project file {source} is disabled for this project in Claude Code "
                f"(disabledMcpjsonServers); enable it there (/mcp in Claude Code) to use it"
            )
        if name in self.by_bridge or name in self.enabled or self.all_enabled:
            return None
        return (
            f"server {name!r} comes from the project file {source}, which any repository can ship, so it "
            f"starts only once you approve it: accept it when Claude Code asks (run `claude` in "
            f"{self.project_dir}, or /mcp), or add {name!r} to approved_project_servers under [children] "
            f"in {self.bridge_config}"
        )


def claude_code_records(environ: Mapping[str, str], home: Path) -> tuple[Path, Path]:
    """Claude Code's global config and user settings, where ``$CLAUDE_CONFIG_DIR`` puts them."""
    base = environ.get("CLAUDE_CONFIG_DIR")
    if base:
        directory = Path(base).expanduser()
        return directory / ".claude.json", directory / "settings.json"
    return home / ".claude.json", home / ".claude" / "settings.json"


def _project_keys(project_dir: Path) -> list[str]:
    """Claude Code keys projects by absolute path; try it as written and with links resolved."""
    keys = [str(project_dir)]
    resolved = os.path.realpath(project_dir)
    if resolved not in keys:
        keys.append(resolved)
    return keys


def _decoded(data: bytes | None) -> Mapping[str, Any]:
    """A JSON object, or an empty one: an unreadable record approves nothing."""
    if not data:
        return {}
    try:
        return _object(msgspec.json.decode(data))
    except msgspec.DecodeError:
        return {}


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _names(record: Mapping[str, Any], key: str) -> list[str]:
    value = record.get(key)
    return [name for name in value if isinstance(name, str)] if isinstance(value, list) else []
