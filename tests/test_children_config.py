"""Discovery of child MCP servers: sources, merge by name, expansion, validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.children import (
    ApprovalRecords,
    ChildrenConfig,
    ConfigLoader,
    ConfigSource,
    ServerConfig,
    claude_code_records,
    default_sources,
    load_children_config,
)
from bridge.errors import ConfigError


class Layout:
    """A fake project directory and home directory, with helpers to write config files."""

    def __init__(self, root: Path) -> None:
        self.cwd = root / "project"
        self.home = root / "home"
        self.cwd.mkdir()
        self.home.mkdir()

    @property
    def project(self) -> Path:
        return self.cwd / ".mcp.json"

    @property
    def lmstudio(self) -> Path:
        return self.home / ".lmstudio" / "mcp.json"

    @property
    def user(self) -> Path:
        return self.home / ".mcp.json"

    def write(self, path: Path, servers: dict[str, Any]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"mcpServers": servers}))
        return path

    def load(
        self, *explicit: Path | str, environ: dict[str, str] | None = None, approve_all: bool = True, **kwargs: Any
    ) -> ChildrenConfig:
        """Load as the bridge would; ``approve_all``: the user let Claude Code enable every project server."""
        environ = {} if environ is None else environ
        sources = default_sources(explicit, environ=environ, cwd=self.cwd, home=self.home)
        if approve_all:
            self.claude_settings({"enableAllProjectMcpServers": True})
        return load_children_config(sources, environ=environ, approvals=self.approvals(), **kwargs)

    def approvals(self, *approved: str) -> ApprovalRecords:
        claude_config, claude_settings = claude_code_records({}, self.home)
        return ApprovalRecords(
            approved=frozenset(approved), claude_config=claude_config, claude_settings=claude_settings
        )

    def claude_settings(self, settings: dict[str, Any]) -> None:
        """Write Claude Code's user settings (``~/.claude/settings.json``)."""
        path = self.home / ".claude" / "settings.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(settings))


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def server(command: str = "srv", **extra: Any) -> dict[str, Any]:
    return {"command": command, **extra}


# -- sources and precedence ---------------------------------------------------------------------


def test_default_sources_order(layout: Layout) -> None:
    """Explicit paths come first, then $MCP_JSON_PATH, ./.mcp.json, ~/.lmstudio/mcp.json, ~/.mcp.json."""
    sources = default_sources(
        ["a.json", "/abs/b.json"], environ={"MCP_JSON_PATH": "env.json"}, cwd=layout.cwd, home=layout.home
    )
    assert [(s.path, s.origin, s.required) for s in sources] == [
        (layout.cwd / "a.json", "explicit", True),
        (Path("/abs/b.json"), "explicit", True),
        (layout.cwd / "env.json", "$MCP_JSON_PATH", True),
        (layout.project, "project", False),
        (layout.lmstudio, "lmstudio", False),
        (layout.user, "user", False),
    ]


def test_default_sources_drop_duplicates(layout: Layout) -> None:
    """A file named twice keeps its highest place."""
    sources = default_sources([layout.user], environ={}, cwd=layout.cwd, home=layout.home)
    assert [s.origin for s in sources] == ["explicit", "project", "lmstudio"]


def test_precedence_per_name(layout: Layout) -> None:
    """Each name is taken from the highest-precedence file that defines it; others still come from lower files."""
    explicit = layout.write(layout.cwd / "cli.json", {"a": server("from-cli")})
    env_file = layout.write(layout.cwd / "env.json", {"a": server("from-env"), "b": server("from-env")})
    layout.write(layout.project, {"b": server("from-project"), "c": server("from-project")})
    layout.write(layout.lmstudio, {"c": server("from-lmstudio"), "d": server("from-lmstudio")})
    layout.write(layout.user, {"d": server("from-user"), "e": server("from-user")})
    config = layout.load(explicit, environ={"MCP_JSON_PATH": str(env_file)})
    assert {name: s.command for name, s in config.servers.items()} == {
        "a": "from-cli",
        "b": "from-env",
        "c": "from-project",
        "d": "from-lmstudio",
        "e": "from-user",
    }
    assert config.servers["c"].source == str(layout.project)
    assert config.sources == (explicit, env_file, layout.project, layout.lmstudio, layout.user)
    assert config.errors == ()


def test_winner_takes_the_whole_definition(layout: Layout) -> None:
    """Fields are never mixed across files: the lower file's env and args are not inherited."""
    layout.write(layout.project, {"a": server("top")})
    layout.write(layout.user, {"a": server("low", args=["--x"], env={"K": "V"}, eager=True)})
    config = layout.load()
    assert config.servers["a"] == ServerConfig(name="a", transport="stdio", command="top", source=str(layout.project))


def test_missing_default_files_are_fine(layout: Layout) -> None:
    """No config file at all is an empty configuration, not an error."""
    config = layout.load()
    assert config == ChildrenConfig()


def test_missing_explicit_file_is_an_error(layout: Layout) -> None:
    """A file the user named must exist."""
    layout.write(layout.project, {"a": server()})
    config = layout.load(layout.cwd / "nope.json")
    assert config.errors == (f"{layout.cwd / 'nope.json'}: config file (explicit) does not exist",)
    assert list(config.servers) == ["a"]


def test_unparseable_file_does_not_hide_the_others(layout: Layout) -> None:
    """A file that is not JSON is reported; the other files still count."""
    layout.project.write_text("{not json")
    layout.write(layout.user, {"a": server()})
    config = layout.load()
    assert list(config.servers) == ["a"]
    assert len(config.errors) == 1
    assert config.errors[0].startswith(f"{layout.project}: not valid JSON: ")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[]", "the top level must be an object with an `mcpServers` key"),
        ('{"mcpServers": []}', "key 'mcpServers' must be an object mapping server names to definitions"),
    ],
)
def test_bad_document_shape(layout: Layout, document: str, message: str) -> None:
    """A file whose overall shape is wrong is reported with its path."""
    layout.project.write_text(document)
    assert layout.load().errors == (f"{layout.project}: {message}",)


def test_file_without_mcp_servers_is_empty(layout: Layout) -> None:
    """Other tools' files without `mcpServers` are tolerated."""
    layout.project.write_text('{"editor": {"tabs": 4}}')
    assert layout.load() == ChildrenConfig(sources=(layout.project,))


def test_raise_for_errors(layout: Layout) -> None:
    """The strict check raises one ConfigError listing every problem."""
    layout.project.write_text("{")
    config = layout.load()
    with pytest.raises(ConfigError, match=r"1 problem\(s\) in the MCP server configuration: .*not valid JSON"):
        config.raise_for_errors()
    ChildrenConfig().raise_for_errors()


# -- fields -------------------------------------------------------------------------------------


def test_stdio_fields(layout: Layout) -> None:
    """Every stdio field is read; a relative cwd is taken from the file's directory."""
    layout.write(
        layout.project,
        {
            "git": {
                "type": "stdio",
                "command": "uvx",
                "args": ["mcp-server-git", "--repository", "."],
                "env": {"GIT_TRACE": "1"},
                "cwd": "sub/dir",
                "eager": True,
                "timeout": 30,
                "startup_timeout": 12.5,
                "alwaysAllow": ["x"],
                "someOtherToolsKey": {"nested": True},
            }
        },
    )
    assert layout.load().servers["git"] == ServerConfig(
        name="git",
        transport="stdio",
        command="uvx",
        args=("mcp-server-git", "--repository", "."),
        env={"GIT_TRACE": "1"},
        cwd=str(layout.cwd / "sub" / "dir"),
        eager=True,
        timeout=30.0,
        startup_timeout=12.5,
        source=str(layout.project),
    )


@pytest.mark.parametrize(
    ("entry", "transport"),
    [
        ({"type": "http", "url": "http://h/mcp"}, "http"),
        ({"type": "streamable-http", "url": "http://h/mcp"}, "http"),
        ({"type": "SSE", "url": "http://h/sse"}, "sse"),
        ({"url": "http://h/mcp"}, "http"),
    ],
)
def test_remote_transports(layout: Layout, entry: dict[str, Any], transport: str) -> None:
    """http (alias streamable-http) and sse servers keep url and headers; a bare url means http."""
    layout.write(layout.project, {"r": {**entry, "headers": {"Authorization": "Bearer x"}}})
    found = layout.load().servers["r"]
    assert (found.transport, found.url, found.headers, found.command) == (
        transport,
        entry["url"],
        {"Authorization": "Bearer x"},
        None,
    )


def test_disabled_is_kept_and_marked(layout: Layout) -> None:
    """A disabled server is in the result, marked, and left out of enabled()."""
    layout.write(layout.project, {"off": server(disabled=True), "on": server()})
    config = layout.load()
    assert config.servers["off"].disabled
    assert list(config.enabled()) == ["on"]


def test_disabled_in_a_higher_file_shadows_a_lower_definition(layout: Layout) -> None:
    """Disabling a server in the project file turns off the user file's definition of it."""
    layout.write(layout.project, {"a": server("mine", disabled=True)})
    layout.write(layout.user, {"a": server("theirs")})
    config = layout.load()
    assert config.servers["a"].command == "mine"
    assert config.enabled() == {}


# -- ${VAR} expansion ---------------------------------------------------------------------------


def test_expansion_in_every_field(layout: Layout) -> None:
    """${VAR} and ${VAR:-default} expand in command, args, env, cwd, url and headers."""
    layout.write(
        layout.project,
        {
            "local": {
                "command": "${BIN}/srv",
                "args": ["--token=${TOKEN}", "${MODE:-fast}", "$NOT_EXPANDED"],
                "env": {"A": "${TOKEN}", "B": "x-${MISSING:-dflt}-y"},
                "cwd": "${WORK:-/tmp}",
            },
            "remote": {
                "type": "http",
                "url": "https://${HOST}/mcp?k=${KEY:-none}",
                "headers": {"Authorization": "Bearer ${TOKEN}"},
            },
        },
    )
    config = layout.load(environ={"BIN": "/opt/bin", "TOKEN": "s3cret", "HOST": "example.org"})
    local, remote = config.servers["local"], config.servers["remote"]
    assert local.command == "/opt/bin/srv"
    assert local.args == ("--token=s3cret", "fast", "$NOT_EXPANDED")
    assert local.env == {"A": "s3cret", "B": "x-dflt-y"}
    assert local.cwd == "/tmp"
    assert remote.url == "https://example.org/mcp?k=none"
    assert remote.headers == {"Authorization": "Bearer s3cret"}


def test_empty_value_beats_default(layout: Layout) -> None:
    """As in Claude Code, a variable set to '' is used; the default is only for unset ones."""
    layout.write(layout.project, {"a": server(args=["${EMPTY:-default}"])})
    assert layout.load(environ={"EMPTY": ""}).servers["a"].args == ("",)


def test_expanded_values_are_not_expanded_again(layout: Layout) -> None:
    """No recursion: a value containing ${...} is copied verbatim."""
    layout.write(layout.project, {"a": server(args=["${OUTER}"])})
    assert layout.load(environ={"OUTER": "${INNER}", "INNER": "no"}).servers["a"].args == ("${INNER}",)


def test_missing_variable_is_an_error_naming_server_field_and_variable(layout: Layout) -> None:
    """An unset ${VAR} without default makes that server invalid; the others still load."""
    layout.write(layout.project, {"a": server(env={"TOKEN": "${API_TOKEN}"}), "b": server()})
    config = layout.load()
    message = (
        f"{layout.project}: server 'a': key 'env.TOKEN' uses ${{API_TOKEN}}, which is not set and has no default; "
        "set it in the bridge's environment or write ${API_TOKEN:-default}"
    )
    assert config.invalid == {"a": message}
    assert config.errors == (message,)
    assert list(config.servers) == ["b"]


@pytest.mark.parametrize(
    ("entry", "key", "problem"),
    [
        (server(args="--port 80"), "args", "must be a list of strings, not a string"),
        (server(args=["--port", 80]), "args[1]", "must be a string, not a number"),
        (server(env={"PORT": 8080}), "env.PORT", "must be a string, not a number"),
        (server(env=["A=1"]), "env", "must be an object of strings, not a list"),
        (server(disabled="yes"), "disabled", "must be true or false, not a string"),
        (server(eager=1), "eager", "must be true or false, not a number"),
        (server(timeout="30"), "timeout", "must be a number of seconds, not a string"),
        (server(timeout=True), "timeout", "must be a number of seconds, not a boolean"),
        (server(startup_timeout=-1), "startup_timeout", "must be a positive number of seconds, not -1"),
        (server(cwd=["/"]), "cwd", "must be a string, not a list"),
        (server(command=None), "command", "is required for a stdio server (or give a `url` for a remote one)"),
        ({"args": []}, "command", "is required for a stdio server (or give a `url` for a remote one)"),
        ({"type": "grpc", "url": "x"}, "type", "must be one of stdio, http, streamable-http, sse; not 'grpc'"),
        ({"type": 3}, "type", "must be a string, not a number"),
        ({"type": "http"}, "url", "is required for a http server"),
        ({"type": "sse", "url": "u", "headers": {"X": None}}, "headers.X", "must be a string, not null"),
        ({"command": "c", "url": "u"}, "type", "is needed: the entry has both `command` and `url`"),
    ],
)
def test_bad_types_name_file_server_and_key(layout: Layout, entry: dict[str, Any], key: str, problem: str) -> None:
    """A known key with a bad value is a ConfigError naming the file, the server and the key."""
    layout.write(layout.project, {"bad": entry, "good": server()})
    config = layout.load()
    assert config.invalid == {"bad": f"{layout.project}: server 'bad': key {key!r} {problem}"}
    assert list(config.servers) == ["good"]
    with pytest.raises(ConfigError) as caught:
        config.raise_for_errors()
    assert f"server 'bad': key {key!r}" in caught.value.message


def test_entry_that_is_not_an_object(layout: Layout) -> None:
    """A server entry must be an object."""
    layout.write(layout.project, {"bad": ["srv"]})
    assert layout.load().invalid == {"bad": f"{layout.project}: server 'bad' must be an object, not a list"}


def test_broken_definition_shadows_lower_files(layout: Layout) -> None:
    """A broken definition is not replaced by a lower file's: that would start a server the user did not write."""
    layout.write(layout.project, {"a": server(args="oops")})
    layout.write(layout.user, {"a": server("fallback")})
    config = layout.load()
    assert "a" in config.invalid
    assert config.servers == {}


# -- last good ----------------------------------------------------------------------------------


def test_loader_keeps_last_good_file(layout: Layout) -> None:
    """A file that stops parsing keeps its last good servers, with the error reported."""
    layout.write(layout.project, {"a": server()})
    loader = ConfigLoader(default_sources(environ={}, cwd=layout.cwd, home=layout.home), environ={})
    good = loader.load()
    layout.project.write_text('{"mcpServers": {"a": ')
    broken = loader.load()
    assert broken.servers == good.servers
    assert broken.errors[0].startswith(f"{layout.project}: not valid JSON")
    assert broken.errors[1] == f"{layout.project}: keeping its last good configuration until the file is fixed"


def test_loader_keeps_last_good_server(layout: Layout) -> None:
    """A server whose definition breaks keeps its last good definition; a new broken one is invalid."""
    layout.write(layout.user, {"a": server("v1")})
    loader = ConfigLoader(default_sources(environ={}, cwd=layout.cwd, home=layout.home), environ={})
    loader.load()
    layout.write(layout.user, {"a": server("v2", timeout="soon"), "b": server(args=7)})
    config = loader.load()
    assert config.servers["a"].command == "v1"
    assert list(config.invalid) == ["b"]
    assert f"{layout.user}: server 'a': keeping its last good definition until it is fixed" in config.errors


def test_loader_forgets_a_deleted_file(layout: Layout) -> None:
    """A default file that disappears takes its servers with it (and its last good version)."""
    layout.write(layout.user, {"a": server()})
    loader = ConfigLoader(default_sources(environ={}, cwd=layout.cwd, home=layout.home), environ={})
    loader.load()
    layout.user.unlink()
    assert loader.load() == ChildrenConfig()
    layout.user.write_text("{")
    assert loader.load().servers == {}


def test_source_struct_is_frozen() -> None:
    """Config values are immutable, so a snapshot handed to another actor cannot change under it."""
    source = ConfigSource(path=Path("/x"), origin="explicit")
    with pytest.raises(AttributeError):
        source.origin = "y"  # type: ignore[misc]
