"""Child MCP servers: where they are configured, how the configuration changes, how they run.

* :mod:`~bridge.children.config`: discovery in Claude Code's ``mcpServers`` format, merged by name;
* :mod:`~bridge.children.approval`: which servers of a project's ``.mcp.json`` the user approved;
* :mod:`~bridge.children.watch`: hot reload by polling, and the diff between two configurations;
* :mod:`~bridge.children.process`: a stdio child as a process group, with streams for ``mcp.ClientSession``.
"""

from __future__ import annotations

from bridge.children._parse import ServerConfig, Transport
from bridge.children._selfref import PARENT_PID_ENV, nested_parent_pid, self_reference
from bridge.children.approval import ApprovalRecords, ProjectApproval, claude_code_records
from bridge.children.config import (
    ChildrenConfig,
    ConfigLoader,
    ConfigSource,
    FileSnapshot,
    default_sources,
    load_children_config,
)
from bridge.children.process import (
    DEFAULT_GRACE,
    DEFAULT_TERM_TIMEOUT,
    ChildOutputError,
    StdioChild,
    child_down_error,
    child_environment,
    open_stdio_child,
)
from bridge.children.watch import ConfigDiff, ConfigUpdate, ConfigWatcher, diff_configs, same_server

__all__ = [
    # configuration
    "ChildrenConfig",
    "ConfigLoader",
    "ConfigSource",
    "FileSnapshot",
    "ServerConfig",
    "Transport",
    "default_sources",
    "load_children_config",
    # approval of project servers
    "ApprovalRecords",
    "ProjectApproval",
    "claude_code_records",
    # hot reload
    "ConfigDiff",
    "ConfigUpdate",
    "ConfigWatcher",
    "diff_configs",
    "same_server",
    # self-exclusion
    "PARENT_PID_ENV",
    "nested_parent_pid",
    "self_reference",
    # processes
    "DEFAULT_GRACE",
    "DEFAULT_TERM_TIMEOUT",
    "ChildOutputError",
    "StdioChild",
    "child_down_error",
    "child_environment",
    "open_stdio_child",
]
