"""The tools a call may name: how a written name resolves, and each parameter's schema."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, final

from bridge.planner.extract._model import KnownTools
from bridge.planner.schema import clean_schema
from bridge.planner.tools import ToolCatalog

__all__ = ["Known"]


@final
class Known:
    """Name resolution and parameter schemas for the tools a call may name. Strictly private."""

    __slots__ = ("_catalog", "_loose", "_names", "_schemas")

    def __init__(self, tools: KnownTools | None) -> None:
        self._catalog: ToolCatalog | None = None
        self._schemas: dict[str, dict[str, Any]] = {}
        self._names: frozenset[str] | None = None
        self._loose: dict[str, str] = {}
        if isinstance(tools, ToolCatalog):
            self._catalog = tools
            self._names = tools.names
            self._schemas = {tool.name: tool.parameters for tool in tools}
            return
        if tools is None:
            return
        self._names = frozenset(tools)
        if isinstance(tools, Mapping):
            self._schemas = {name: clean_schema(schema) for name, schema in tools.items() if schema is not None}
        loose: dict[str, set[str]] = {}
        for name in self._names:
            loose.setdefault(_loose_key(name), set()).add(name)
        self._loose = {key: next(iter(names)) for key, names in loose.items() if len(names) == 1}

    @property
    def given(self) -> bool:
        return self._names is not None

    def resolve(self, name: str) -> str | None:
        """The known name meant by ``name``, or None."""
        if self._catalog is not None:
            tool = self._catalog.resolve(name)
            return None if tool is None else tool.name
        if self._names is None:
            return None
        if name in self._names:
            return name
        return self._loose.get(_loose_key(name))

    def canonical(self, name: str) -> str:
        """The known name when it resolves, else the name as written."""
        return self.resolve(name) or name.strip()

    def property_schema(self, tool: str, key: str) -> Mapping[str, Any] | None:
        properties = self._schemas.get(tool, {}).get("properties")
        if isinstance(properties, Mapping):
            sub = properties.get(key)
            if isinstance(sub, Mapping):
                return sub
        return None


def _loose_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
