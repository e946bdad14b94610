"""Turning child servers' MCP tools into function tools a local model can call.

OpenAI-compatible servers accept tool names matching ``^[a-zA-Z0-9_-]{1,64}$``
only, while MCP tool names may hold dots, slashes or spaces, may be longer,
and two child servers may both offer ``search``. Every tool therefore gets a
*wire name* (what the model sees and calls), and the :class:`ToolCatalog`
maps a wire name back to the exact (server, tool) pair. Because models often
call a tool by a slightly different name (the original MCP name, another
case, LM Studio's snake_case normalization, an ``mcp__`` or ``functions.``
prefix), :meth:`ToolCatalog.resolve` also accepts those when the match is
unambiguous.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, final

import msgspec

from bridge.planner.schema import clean_schema

__all__ = [
    "MAX_TOOL_NAME_LENGTH",
    "McpTool",
    "PreparedTool",
    "ToolCatalog",
    "build_catalog",
    "sanitize_tool_name",
]

MAX_TOOL_NAME_LENGTH: Final = 64
"""The longest tool name OpenAI-compatible servers accept."""

_VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_-]+")
_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[^A-Za-z0-9]+")
_LOOSE_KEY = re.compile(r"[^a-z0-9]+")
_CALL_PREFIXES: Final = ("functions.", "functions:", "functions/", "mcp__", "tools.", "tool:")
_HASH_LENGTH: Final = 8


class McpTool(msgspec.Struct, frozen=True, kw_only=True):
    """One tool as a child MCP server lists it (plain data, no SDK types)."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class PreparedTool(msgspec.Struct, frozen=True, kw_only=True):
    """A child server's tool ready to offer to a model.

    Attributes:
        name: The wire name the model sees and calls.
        server: The child server that owns the tool.
        tool: The tool's exact MCP name on that server; call it with this.
        description: The description shown to the model (synthesized when missing).
        parameters: The cleaned schema shown to the model (see :func:`clean_schema`).
        input_schema: The original schema; validate arguments against this one.
    """

    name: str
    server: str
    tool: str
    description: str
    parameters: dict[str, Any]
    input_schema: dict[str, Any] | None = None

    def chat_tool(self) -> dict[str, Any]:
        """The tool in Chat Completions form (``{"type":"function","function":{...}}``)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def responses_tool(self) -> dict[str, Any]:
        """The tool in the flat form ``/v1/responses`` requires (it rejects the nested chat form)."""
        return {"type": "function", "name": self.name, "description": self.description, "parameters": self.parameters}


@final
class ToolCatalog:
    """The tools offered to a model, and the way back from a called name to its server.

    Build it with :func:`build_catalog`.
    """

    __slots__ = ("_by_key", "_by_name", "_by_original", "_tools")

    def __init__(self, tools: Iterable[PreparedTool]) -> None:
        self._tools = tuple(tools)
        self._by_name = {tool.name: tool for tool in self._tools}
        if len(self._by_name) != len(self._tools):
            raise ValueError("Tool wire names must be unique; build the catalog with build_catalog().")
        by_key: dict[str, set[str]] = {}
        for tool in self._tools:
            for alias in (tool.name, tool.tool, f"{tool.server}_{tool.tool}"):
                by_key.setdefault(_loose_key(alias), set()).add(tool.name)
        self._by_key = {key: next(iter(names)) for key, names in by_key.items() if len(names) == 1}
        by_original: dict[str, list[str]] = {}
        for tool in self._tools:
            by_original.setdefault(tool.tool, []).append(tool.name)
        self._by_original = {tool: names[0] for tool, names in by_original.items() if len(names) == 1}

    @property
    def tools(self) -> tuple[PreparedTool, ...]:
        """Every tool, in the order the servers listed them."""
        return self._tools

    @property
    def names(self) -> frozenset[str]:
        """Every wire name."""
        return frozenset(self._by_name)

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[PreparedTool]:
        return iter(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> PreparedTool | None:
        """The tool with exactly this wire name."""
        return self._by_name.get(name)

    def resolve(self, name: str) -> PreparedTool | None:
        """The tool a model meant by ``name``, or None when unknown or ambiguous.

        Tries the exact wire name, then (without an ``mcp__``/``functions.``
        prefix) the wire name or the exact original MCP name, then, ignoring
        case and punctuation, the wire name, the original name and
        ``server_tool``. A match that fits two tools returns None.
        """
        exact = self._by_name.get(name)
        if exact is not None:
            return exact
        candidate = name.strip().strip("`'\"")
        for prefix in _CALL_PREFIXES:
            if candidate.startswith(prefix):
                candidate = candidate[len(prefix) :]
                break
        found = candidate if candidate in self._by_name else self._by_original.get(candidate)
        if found is None:
            found = self._by_key.get(_loose_key(candidate))
        return None if found is None else self._by_name[found]

    def chat_tools(self) -> list[dict[str, Any]]:
        """All tools in Chat Completions form, for ``tools=`` of ``/v1/chat/completions``."""
        return [tool.chat_tool() for tool in self._tools]

    def responses_tools(self) -> list[dict[str, Any]]:
        """All tools in the flat form, for ``tools=`` of ``/v1/responses``."""
        return [tool.responses_tool() for tool in self._tools]


def sanitize_tool_name(name: str) -> str:
    """Make a name valid for OpenAI-compatible servers, changing as little as possible.

    A valid name is returned unchanged. Otherwise each run of characters other
    than letters, digits, ``_`` and ``-`` becomes one ``_`` (``"fs.read file"``
    → ``"fs_read_file"``); an empty result becomes ``"tool"``. Length is not
    handled here: :func:`build_catalog` shortens with a stable hash.
    """
    if _VALID_NAME.fullmatch(name):
        return name
    cleaned = _INVALID_RUN.sub("_", name.strip()).strip("_")
    return cleaned or "tool"


def build_catalog(
    servers: Mapping[str, Sequence[McpTool]],
    *,
    namespace: bool | None = None,
    max_ref_depth: int = 1,
    description_limit: int | None = None,
) -> ToolCatalog:
    """Prepare every tool of every child server for a model.

    Args:
        servers: Each child server's name and the tools it lists.
        namespace: Name tools ``server__tool``. ``None`` (the default) does it
            only when more than one server has tools, so names stay short in
            the common single-server case.
        max_ref_depth: Passed to :func:`clean_schema`.
        description_limit: Cut longer descriptions to this many characters
            (``None`` keeps them whole); small contexts fill up with them.

    Returns:
        The catalog. Wire names are unique, at most 64 characters, and stable:
        the same tools give the same names. A name that had to be changed and
        collides with another gets a short hash of its (server, tool) suffixed;
        a tool listed twice by the same server is kept once.
    """
    if namespace is None:
        namespace = sum(1 for tools in servers.values() if tools) > 1
    seen: set[tuple[str, str]] = set()
    pending: list[tuple[str, McpTool, str, bool]] = []
    for server, tools in servers.items():
        for tool in tools:
            if (server, tool.name) in seen:
                continue
            seen.add((server, tool.name))
            wanted = f"{server}__{tool.name}" if namespace else tool.name
            base = f"{sanitize_tool_name(server)}__{sanitize_tool_name(tool.name)}" if namespace else None
            name = _shorten(base or sanitize_tool_name(tool.name), (server, tool.name))
            pending.append((server, tool, name, name == wanted))
    names = _unique_names(pending)
    return ToolCatalog(
        PreparedTool(
            name=name,
            server=server,
            tool=tool.name,
            description=_description(server, tool, description_limit),
            parameters=clean_schema(tool.input_schema, max_ref_depth=max_ref_depth),
            input_schema=tool.input_schema,
        )
        for (server, tool, _, _), name in zip(pending, names, strict=True)
    )


def _unique_names(pending: Sequence[tuple[str, McpTool, str, bool]]) -> list[str]:
    """Give colliding names a hash suffix; names that needed no change keep theirs."""
    taken: set[str] = set()
    names: list[str] = [""] * len(pending)
    order = sorted(range(len(pending)), key=lambda i: not pending[i][3])
    for index in order:
        server, tool, name, _ = pending[index]
        if name in taken:
            identity = (server, tool.name)
            suffix = "_" + _digest(identity)[:6]
            name = _shorten(name[: MAX_TOOL_NAME_LENGTH - len(suffix)] + suffix, identity)
            counter = 2
            while name in taken:
                tail = f"{suffix}_{counter}"
                name = name[: MAX_TOOL_NAME_LENGTH - len(tail)] + tail
                counter += 1
        taken.add(name)
        names[index] = name
    return names


def _shorten(name: str, identity: tuple[str, str]) -> str:
    if len(name) <= MAX_TOOL_NAME_LENGTH:
        return name
    return name[: MAX_TOOL_NAME_LENGTH - _HASH_LENGTH - 1] + "_" + _digest(identity)[:_HASH_LENGTH]


def _digest(identity: tuple[str, str]) -> str:
    return hashlib.sha256("\x00".join(identity).encode()).hexdigest()


def _loose_key(name: str) -> str:
    return _LOOSE_KEY.sub("_", name.lower()).strip("_")


def _description(server: str, tool: McpTool, limit: int | None) -> str:
    text = (tool.description or "").strip()
    if not text:
        words = " ".join(w for w in _WORD_BREAK.split(tool.name) if w).lower() or tool.name
        text = f"{words[:1].upper()}{words[1:]} (tool `{tool.name}` of the `{server}` server; it has no description)."
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)].rstrip() + "…"
    return text
