"""Tool conversion: wire names, the mapping back to (server, tool), and both tool forms."""

from __future__ import annotations

import re

import pytest

from bridge.planner import MAX_TOOL_NAME_LENGTH, McpTool, PreparedTool, ToolCatalog, build_catalog, sanitize_tool_name

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def by_tool(catalog: ToolCatalog) -> dict[tuple[str, str], PreparedTool]:
    return {(tool.server, tool.tool): tool for tool in catalog}


def test_valid_name_is_unchanged() -> None:
    """A name that is already valid is returned as is."""
    assert sanitize_tool_name("read_file-2") == "read_file-2"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fs.read file", "fs_read_file"),
        ("  spaced  name ", "spaced_name"),
        ("a/b:c", "a_b_c"),
        ("über", "ber"),
        ("...", "tool"),
        ("", "tool"),
    ],
)
def test_invalid_characters_are_replaced(name: str, expected: str) -> None:
    """Each run of invalid characters becomes one underscore; nothing valid left gives 'tool'."""
    assert sanitize_tool_name(name) == expected


def test_single_server_names_are_not_namespaced() -> None:
    """With one server, tools keep their own names."""
    catalog = build_catalog({"fs": [McpTool(name="read_file")]})
    assert [tool.name for tool in catalog] == ["read_file"]


def test_several_servers_are_namespaced() -> None:
    """With more than one server, names become server__tool."""
    catalog = build_catalog({"fs": [McpTool(name="read")], "web": [McpTool(name="search")]})
    assert [tool.name for tool in catalog] == ["fs__read", "web__search"]


def test_namespace_can_be_forced_either_way() -> None:
    """namespace=True namespaces a single server; namespace=False keeps plain names for several."""
    assert build_catalog({"fs": [McpTool(name="read")]}, namespace=True).names == {"fs__read"}
    catalog = build_catalog({"fs": [McpTool(name="read")], "web": [McpTool(name="search")]}, namespace=False)
    assert catalog.names == {"read", "search"}


def test_servers_without_tools_do_not_trigger_namespacing() -> None:
    """Only servers that have tools count toward 'more than one server'."""
    catalog = build_catalog({"fs": [McpTool(name="read")], "empty": []})
    assert catalog.names == {"read"}


def test_name_with_dots_and_spaces_maps_back_exactly() -> None:
    """The sanitized wire name resolves to the exact original (server, tool)."""
    catalog = build_catalog({"files": [McpTool(name="fs.read file")]})
    tool = catalog.get("fs_read_file")
    assert tool is not None
    assert (tool.server, tool.tool) == ("files", "fs.read file")


def test_long_name_is_truncated_with_a_stable_hash() -> None:
    """A 100-character name is cut to 64 with an 8-hex-digit hash of its identity, the same every time."""
    long_name = "a" * 100
    first = build_catalog({"fs": [McpTool(name=long_name)]}).tools[0]
    second = build_catalog({"fs": [McpTool(name=long_name)], "other": []}).tools[0]
    assert len(first.name) == MAX_TOOL_NAME_LENGTH
    assert re.fullmatch(r"a{55}_[0-9a-f]{8}", first.name)
    assert first.name == second.name
    assert first.tool == long_name


def test_long_names_with_the_same_prefix_stay_distinct() -> None:
    """Two long names sharing their first 64 characters get different hashes."""
    catalog = build_catalog({"fs": [McpTool(name="b" * 70 + "1"), McpTool(name="b" * 70 + "2")]})
    names = [tool.name for tool in catalog]
    assert len(set(names)) == 2
    assert all(VALID.fullmatch(name) for name in names)


def test_long_namespaced_name_is_valid() -> None:
    """server__tool longer than 64 characters is shortened too."""
    catalog = build_catalog({"s" * 40: [McpTool(name="t" * 40)], "web": [McpTool(name="x")]})
    assert all(VALID.fullmatch(tool.name) for tool in catalog)


def test_duplicates_after_sanitizing_are_made_unique() -> None:
    """'read.file' and 'read file' both sanitize to the valid name 'read_file', which that tool keeps."""
    catalog = build_catalog({"fs": [McpTool(name="read.file"), McpTool(name="read file"), McpTool(name="read_file")]})
    tools = by_tool(catalog)
    assert tools[("fs", "read_file")].name == "read_file"
    assert re.fullmatch(r"read_file_[0-9a-f]{6}", tools[("fs", "read.file")].name)
    assert re.fullmatch(r"read_file_[0-9a-f]{6}", tools[("fs", "read file")].name)
    assert len(catalog.names) == 3


def test_same_tool_name_on_two_servers_without_namespace() -> None:
    """Forcing plain names, a clash between servers still yields unique names, the first keeping its own."""
    catalog = build_catalog({"a": [McpTool(name="search")], "b": [McpTool(name="search")]}, namespace=False)
    tools = by_tool(catalog)
    assert tools[("a", "search")].name == "search"
    assert re.fullmatch(r"search_[0-9a-f]{6}", tools[("b", "search")].name)


def test_a_tool_listed_twice_is_kept_once() -> None:
    """A server listing the same tool twice gives one catalog entry."""
    catalog = build_catalog({"fs": [McpTool(name="read"), McpTool(name="read")]})
    assert len(catalog) == 1


def test_catalog_rejects_duplicate_wire_names() -> None:
    """Building a catalog by hand with clashing wire names is refused."""
    tool = PreparedTool(name="x", server="s", tool="x", description="d", parameters={})
    with pytest.raises(
        ValueError, match=r"^Tool wire names must be unique; build the catalog with build_catalog\(\)\.$"
    ):
        ToolCatalog([tool, tool])


def test_missing_description_is_synthesized_from_the_name() -> None:
    """A tool without a description gets one made from its name and server."""
    catalog = build_catalog({"fs": [McpTool(name="readFile_now"), McpTool(name="x", description="   ")]})
    assert catalog.tools[0].description == (
        "Read file now (tool `readFile_now` of the `fs` server; it has no description)."
    )
    assert catalog.tools[1].description == "X (tool `x` of the `fs` server; it has no description)."


def test_description_limit_cuts_long_descriptions() -> None:
    """description_limit keeps at most that many characters, ending with an ellipsis."""
    catalog = build_catalog({"fs": [McpTool(name="t", description="word " * 100)]}, description_limit=20)
    assert catalog.tools[0].description == "word word word word…"


def test_no_schema_gives_an_empty_object() -> None:
    """A tool without an input schema takes an empty object."""
    tool = build_catalog({"fs": [McpTool(name="now")]}).tools[0]
    assert tool.parameters == {"type": "object", "properties": {}}
    assert tool.input_schema is None


def test_chat_and_responses_forms() -> None:
    """The chat form nests under 'function'; the Responses form is flat."""
    schema = {"type": "object", "properties": {"p": {"type": "string", "title": "P"}}}
    catalog = build_catalog({"fs": [McpTool(name="read", description="Read.", input_schema=schema)]})
    parameters = {"type": "object", "properties": {"p": {"type": "string"}}}
    assert catalog.chat_tools() == [
        {"type": "function", "function": {"name": "read", "description": "Read.", "parameters": parameters}}
    ]
    assert catalog.responses_tools() == [
        {"type": "function", "name": "read", "description": "Read.", "parameters": parameters}
    ]
    assert catalog.tools[0].input_schema == schema


def test_resolve_exact_and_prefixed_names() -> None:
    """Wire names resolve exactly, also behind mcp__ or functions. prefixes."""
    catalog = build_catalog({"fs": [McpTool(name="read")], "web": [McpTool(name="search")]})
    for name in ("fs__read", "mcp__fs__read", "functions.fs__read"):
        tool = catalog.resolve(name)
        assert tool is not None
        assert tool.name == "fs__read"


def test_resolve_original_and_loose_names() -> None:
    """The original MCP name, another case, or server.tool resolve when unambiguous."""
    catalog = build_catalog({"fs": [McpTool(name="read.file")], "web": [McpTool(name="Web-Search")]})
    expectations = {
        "read.file": "fs__read_file",
        "READ_FILE": "fs__read_file",
        "web_search": "web__Web-Search",
        "web.web_search": "web__Web-Search",
    }
    for name, wire in expectations.items():
        tool = catalog.resolve(name)
        assert tool is not None, name
        assert tool.name == wire


def test_resolve_ambiguous_or_unknown_is_none() -> None:
    """A loose name that fits two tools, or none, resolves to nothing."""
    catalog = build_catalog({"a": [McpTool(name="search")], "b": [McpTool(name="search")]})
    assert catalog.resolve("search") is None
    assert catalog.resolve("delete_everything") is None


def test_resolve_prefers_the_exact_original_name() -> None:
    """'read.file' is exactly one tool's original name even though 'read_file' is another's."""
    catalog = build_catalog({"fs": [McpTool(name="read.file"), McpTool(name="read_file")]})
    tool = catalog.resolve("read.file")
    assert tool is not None
    assert tool.tool == "read.file"


def test_catalog_container_protocol() -> None:
    """The catalog has a length, iterates in server order, and answers membership by wire name."""
    catalog = build_catalog({"fs": [McpTool(name="b"), McpTool(name="a")]})
    assert len(catalog) == 2
    assert [tool.name for tool in catalog] == ["b", "a"]
    assert "a" in catalog
    assert "c" not in catalog
    assert catalog.get("c") is None
