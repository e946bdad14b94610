"""Loading the settings: precedence (flags > environment > file > defaults) and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import CliFlags, default_config_path, load_config, load_settings
from bridge.errors import ConfigError
from bridge.settings import BridgeSettings, ModelLimits


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def urls(settings: BridgeSettings) -> list[str]:
    return [s.url for s in settings.servers]


def test_defaults_without_anything() -> None:
    """No flags, no environment, no file: LM Studio on localhost:1234 and the struct's defaults."""
    settings = load_settings(environ={})
    assert urls(settings) == ["http://localhost:1234"]
    assert settings.servers[0].name == "localhost:1234"
    assert settings.call_budget == BridgeSettings().call_budget
    assert settings.log_level == "INFO"


def test_file_sets_every_section(tmp_path: Path) -> None:
    """The TOML file fills servers (short and table forms), limits, budgets, default model and children."""
    path = write(
        tmp_path,
        """
default_model = "qwen/qwen3-coder-30b"
call_budget = 40
servers = ["localhost:1234/v1", {url = "http://gpu:1234", name = "gpu", api_key = "secret"}]
[default_limits]
slots = 2
queue = 8
[models."qwen/qwen3-coder-30b"]
slots = 1
[budgets]
first_token = 30
[children]
config_paths = ["~/extra-mcp.json"]
""",
    )
    loaded = load_config(CliFlags(config=str(path)), environ={})
    s = loaded.settings
    assert loaded.file == path
    assert urls(s) == ["http://localhost:1234", "http://gpu:1234"]
    assert s.servers[1].name == "gpu"
    assert s.servers[1].api_key == "secret"
    assert s.default_model == "qwen/qwen3-coder-30b"
    assert s.call_budget == 40
    assert s.default_limits == ModelLimits(slots=2, queue=8)
    # A model's table inherits unset fields from [default_limits], not from the built-in defaults.
    assert s.limits_for("qwen/qwen3-coder-30b") == ModelLimits(slots=1, queue=8)
    assert s.budgets.first_token == 30
    assert s.budgets.idle == BridgeSettings().budgets.idle
    assert s.children.config_paths == [str(Path("~/extra-mcp.json").expanduser())]
    assert loaded.origin("call_budget") == f"file {path}"
    assert loaded.origin("log_level") == "default"


def test_environment_beats_file(tmp_path: Path) -> None:
    """Environment variables override the file, key by key; the rest of the file stays."""
    path = write(tmp_path, 'call_budget = 40\ndefault_model = "a"\nservers = ["http://file:1"]\n')
    env = {
        "LMSTUDIO_BRIDGE_CONFIG": str(path),
        "LMSTUDIO_BRIDGE_CALL_BUDGET": "30",
        "LMSTUDIO_BASE_URL": "http://env-host:4321/v1",
        "LMSTUDIO_BRIDGE_LOG_LEVEL": "debug",
    }
    loaded = load_config(environ=env)
    assert loaded.settings.call_budget == 30
    assert loaded.settings.default_model == "a"
    assert urls(loaded.settings) == ["http://env-host:4321"]
    assert loaded.settings.log_level == "DEBUG"
    assert loaded.origin("call_budget") == "env LMSTUDIO_BRIDGE_CALL_BUDGET"


def test_flags_beat_environment_and_file(tmp_path: Path) -> None:
    """Flags override both the environment and the file."""
    path = write(tmp_path, 'call_budget = 40\nlog_format = "json"\n')
    env = {"LMSTUDIO_BRIDGE_CALL_BUDGET": "30", "LMSTUDIO_HOST": "envhost"}
    flags = CliFlags(config=str(path), call_budget=20, servers=("http://flag:1",), log_level="WARNING")
    loaded = load_config(flags, environ=env)
    assert loaded.settings.call_budget == 20
    assert urls(loaded.settings) == ["http://flag:1"]
    assert loaded.settings.log_format == "json"  # only the file says it
    assert loaded.settings.log_level == "WARNING"
    assert loaded.origin("servers") == "flag --server"


def test_host_and_port_like_the_older_bridge() -> None:
    """LMSTUDIO_HOST/LMSTUDIO_PORT give one server; the port defaults to 1234."""
    assert urls(load_settings(environ={"LMSTUDIO_HOST": "10.0.0.5", "LMSTUDIO_PORT": "5678"})) == [
        "http://10.0.0.5:5678"
    ]
    assert urls(load_settings(environ={"LMSTUDIO_HOST": "box"})) == ["http://box:1234"]
    assert urls(load_settings(environ={"LMSTUDIO_PORT": "1300"})) == ["http://localhost:1300"]


def test_server_list_and_base_url_combine_without_duplicates() -> None:
    """LMSTUDIO_BASE_URL and LMSTUDIO_BRIDGE_SERVERS are combined; the same server twice counts once."""
    env = {
        "LMSTUDIO_BASE_URL": "http://a:1234/v1",
        "LMSTUDIO_BRIDGE_SERVERS": "http://a:1234, http://b:1234 ,http://c:11434",
    }
    assert urls(load_settings(environ=env)) == ["http://a:1234", "http://b:1234", "http://c:11434"]


def test_api_key_goes_to_servers_without_their_own(tmp_path: Path) -> None:
    """LMSTUDIO_API_KEY fills in servers that have no key; a server's own key stays."""
    path = write(tmp_path, 'servers = [{url = "http://a:1"}, {url = "http://b:1", api_key = "own"}]\n')
    s = load_settings(CliFlags(config=str(path)), environ={"LMSTUDIO_API_KEY": "shared"})
    assert [x.api_key for x in s.servers] == ["shared", "own"]
    s = load_settings(environ={"LMSTUDIO_API_KEY": "k"})
    assert urls(s) == ["http://localhost:1234"]
    assert s.servers[0].api_key == "k"


def test_default_file_location_is_used_when_present(tmp_path: Path) -> None:
    """Without --config or LMSTUDIO_BRIDGE_CONFIG, ~/.config/lmstudio-bridge/config.toml is read if it exists."""
    env = {"HOME": str(tmp_path)}
    assert load_config(environ=env).file is None
    path = default_config_path(env)
    assert path == tmp_path / ".config" / "lmstudio-bridge" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("call_budget = 12\n", encoding="utf-8")
    loaded = load_config(environ=env)
    assert loaded.file == path
    assert loaded.settings.call_budget == 12


def test_unknown_top_level_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "call_budjet = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(CliFlags(config=str(path)), environ={})
    message = info.value.message
    assert "call_budjet" in message
    assert str(path) in message
    assert "call_budget" in message


def test_unknown_nested_key_names_the_full_path(tmp_path: Path) -> None:
    """Unknown keys in nested tables are found too (budgets allow extras in their struct)."""
    path = write(tmp_path, "[budgets]\nfirsttoken = 3\n")
    with pytest.raises(ConfigError, match=r"budgets\.firsttoken.*Did you mean budgets\.first_token"):
        load_config(CliFlags(config=str(path)), environ={})
    path = write(tmp_path, '[models."qwen/x"]\nslot = 3\n')
    with pytest.raises(ConfigError, match=r'models\."qwen/x"\.slot'):
        load_config(CliFlags(config=str(path)), environ={})


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('call_budget = "soon"', "call_budget"),
        ('[models."qwen/x"]\nslots = "two"', 'models."qwen/x".slots'),
        ('servers = [{name = "x"}]', "servers[0]"),
        ("[budgets]\ntotal = -1", "budgets"),
        ("[default_limits]\nslots = 0", "default_limits.slots"),
        ("call_budget = 0", "call_budget"),
        ('log_level = "LOUD"', "log_level"),
        ('servers = ["ftp://x"]', "servers[0].url"),
        ("[retry]\nattempts = 0", "retry.attempts"),
    ],
)
def test_bad_values_name_the_key_and_file(tmp_path: Path, toml: str, key: str) -> None:
    path = write(tmp_path, toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(CliFlags(config=str(path)), environ={})
    assert key in info.value.message
    assert str(path) in info.value.message
    assert info.value.details["key"] == key


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "call_budget = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(CliFlags(config=str(path)), environ={})
    assert str(path) in info.value.message


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    """A file named by flag or environment must exist; the default location may be absent."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(CliFlags(config=str(missing)), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={"LMSTUDIO_BRIDGE_CONFIG": str(missing)})


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"LMSTUDIO_PORT": "abc"}, "LMSTUDIO_PORT"),
        ({"LMSTUDIO_PORT": "70000"}, "LMSTUDIO_PORT"),
        ({"LMSTUDIO_BRIDGE_CALL_BUDGET": "soon"}, "LMSTUDIO_BRIDGE_CALL_BUDGET"),
        ({"LMSTUDIO_BRIDGE_CALL_BUDGET": "-5"}, "LMSTUDIO_BRIDGE_CALL_BUDGET"),
        ({"LMSTUDIO_BRIDGE_LOG_FORMAT": "xml"}, "LMSTUDIO_BRIDGE_LOG_FORMAT"),
        ({"LMSTUDIO_BASE_URL": "ftp://host"}, "LMSTUDIO_BASE_URL"),
        ({"LMSTUDIO_BRIDGE_SERVERS": " , "}, "LMSTUDIO_BRIDGE_SERVERS"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ=env)
    assert name in info.value.message


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--call-budget"):
        load_config(CliFlags(call_budget=-1), environ={})
    with pytest.raises(ConfigError, match="--port"):
        load_config(CliFlags(port=0), environ={})


def test_two_servers_with_one_name_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'servers = [{url = "http://a:1", name = "x"}, {url = "http://b:1", name = "x"}]\n')
    with pytest.raises(ConfigError, match=r"servers\[1\]\.name"):
        load_config(CliFlags(config=str(path)), environ={})


def test_api_key_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    """A key read from a file often ends in a newline; as a header it would start a header of its own."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"LMSTUDIO_API_KEY": "sk-123\r\nX-Injected: 1"})
    assert caught.value.details["key"] == "servers[0].api_key"
    assert "line break" in caught.value.message
    assert "sk-123" not in caught.value.message  # a secret is never echoed
