"""Loading :class:`~bridge.settings.BridgeSettings`: CLI flags > environment > TOML file > defaults.

Each layer is a partial settings tree. Layers are merged key by key (tables
merge, lists and plain values replace), then the result is checked once
more as a whole. Every problem is a :class:`~bridge.errors.ConfigError` whose
message names the key and where it came from (the file, the environment
variable, the flag), and says what to write instead.

The environment:

==========================  ===============================================================
``LMSTUDIO_HOST``           host of one LM Studio server (with ``LMSTUDIO_PORT``, as the older bridge)
``LMSTUDIO_PORT``           its port (default 1234 when only the host is set)
``LMSTUDIO_BASE_URL``       one server's base URL (``http://host:1234`` or ``…/v1``)
``LMSTUDIO_BRIDGE_SERVERS`` several servers, comma-separated URLs
``LMSTUDIO_API_KEY``        bearer token for servers that do not name their own
``LMSTUDIO_BRIDGE_CONFIG``  path of the TOML file (default ``~/.config/lmstudio-bridge/config.toml`` if present)
``LMSTUDIO_BRIDGE_DEFAULT_MODEL``  the model used when a call names none
``LMSTUDIO_BRIDGE_CALL_BUDGET``    seconds one MCP tool call may take
``LMSTUDIO_BRIDGE_LOG_LEVEL``      DEBUG, INFO, WARNING, ERROR or CRITICAL
``LMSTUDIO_BRIDGE_LOG_FORMAT``     ``plain`` or ``json`` (JSON lines on stderr)
``LMSTUDIO_BRIDGE_TOOLS``          ``default`` or ``compat`` (adds the older bridge's remaining tools)
``DEFAULT_MODEL``           the older bridge's name for the default model (``LMSTUDIO_BRIDGE_DEFAULT_MODEL`` wins)
``WORKING_DIR``             the older bridge's directory for file work: the working directory of the
                            ``autonomous_filesystem_full`` compat tool when a call names none
``MCP_JSON_PATH``           an MCP config file to read child servers from (read by child discovery)
==========================  ===============================================================

Servers given by host/port, base URL and the list are combined (duplicates
dropped). Servers named by one layer replace those of the layers below it.

The TOML file has the fields of :class:`~bridge.settings.BridgeSettings`::

    default_model = "qwen/qwen3-coder-30b"
    call_budget = 50                      # seconds; keep it under the client's tool timeout
    servers = ["http://localhost:1234"]   # or [[servers]] tables with url, name, api_key, max_concurrent, slots

    [default_limits]                      # every model: parallel requests, queue length
    slots = 4
    queue = 64

    [models."qwen/qwen3-coder-30b"]       # one model; unset fields come from default_limits
    slots = 2

    [budgets]                             # per LLM call: connect, first_token, idle, total
    first_token = 120

    [children]                            # child MCP servers
    config_paths = ["~/my-mcp.json"]

    [jobs]                                # work that outlives one call
    on_budget = "job"                     # or "cut": stop a call at call_budget
    ttl = 3600                            # seconds a finished job's result is kept
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from bridge.errors import ConfigError
from bridge.server_address import check_api_key, has_credentials, normalize_base_url
from bridge.settings import BridgeSettings, ModelLimits

__all__ = [
    "ENV_VARS",
    "CliFlags",
    "LoadedConfig",
    "default_config_path",
    "load_config",
    "load_settings",
]

ENV_VARS: Final = (
    "LMSTUDIO_HOST",
    "LMSTUDIO_PORT",
    "LMSTUDIO_BASE_URL",
    "LMSTUDIO_BRIDGE_SERVERS",
    "LMSTUDIO_API_KEY",
    "LMSTUDIO_BRIDGE_CONFIG",
    "LMSTUDIO_BRIDGE_DEFAULT_MODEL",
    "LMSTUDIO_BRIDGE_CALL_BUDGET",
    "LMSTUDIO_BRIDGE_LOG_LEVEL",
    "LMSTUDIO_BRIDGE_LOG_FORMAT",
    "LMSTUDIO_BRIDGE_TOOLS",
    "DEFAULT_MODEL",
    "WORKING_DIR",
    "MCP_JSON_PATH",
)
"""Every environment variable the bridge reads (the last three as the older LM Studio bridge named them)."""

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("plain", "json")
DEFAULT_PORT: Final = 1234

Tree = dict[str, Any]


class CliFlags(msgspec.Struct, frozen=True, kw_only=True):
    """What the command line may set; ``None`` (or empty) means "not given".

    ``servers``, ``base_url`` and ``host``/``port`` name LLM servers and are combined.
    """

    config: str | None = None
    servers: tuple[str, ...] = ()
    base_url: str | None = None
    host: str | None = None
    port: int | None = None
    api_key: str | None = None
    default_model: str | None = None
    call_budget: float | None = None
    log_level: str | None = None
    log_format: str | None = None
    tools: str | None = None


class LoadedConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The settings and where they came from.

    Attributes:
        settings: The effective settings.
        file: The TOML file that was read, if any.
        origins: For each key that was set (dotted, e.g. ``budgets.total``), its source:
            ``"file <path>"``, ``"env LMSTUDIO_…"`` or ``"flag --…"``. Unlisted keys are defaults.
    """

    settings: BridgeSettings
    file: Path | None = None
    origins: dict[str, str] = msgspec.field(default_factory=dict)

    def origin(self, key: str) -> str:
        return self.origins.get(key, "default")


def default_config_path(environ: Mapping[str, str]) -> Path | None:
    """``$XDG_CONFIG_HOME/lmstudio-bridge/config.toml`` (or ``~/.config/…``); ``None`` without a home."""
    base = environ.get("XDG_CONFIG_HOME") or (str(Path(environ["HOME"]) / ".config") if environ.get("HOME") else None)
    return None if base is None else Path(base).expanduser() / "lmstudio-bridge" / "config.toml"


def load_settings(flags: CliFlags | None = None, *, environ: Mapping[str, str] | None = None) -> BridgeSettings:
    """The effective settings (see :func:`load_config`)."""
    return load_config(flags, environ=environ).settings


def load_config(flags: CliFlags | None = None, *, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load the settings: ``flags`` > ``environ`` > TOML file > defaults.

    Args:
        flags: What the command line set.
        environ: The environment (``os.environ`` when omitted).

    Raises:
        ConfigError: A key is unknown or a value is wrong; the message names the key and its source.
    """
    flags = flags or CliFlags()
    env = os.environ if environ is None else environ
    path, required = _config_file(flags, env)
    file_tree: Tree = {}
    file_label = ""
    if path is not None and (required or path.is_file()):
        file_label = f"file {path}"
        file_tree = _read_toml(path)
    env_tree, env_origins = _env_layer(env)
    flag_tree, flag_origins = _flag_layer(flags)
    origins: dict[str, str] = {}
    for key in _leaves(file_tree):
        origins[key] = file_label
    origins.update(env_origins)
    origins.update(flag_origins)
    _check_layer(file_tree, file_label or "the configuration")
    _check_layer(env_tree, "the environment", env_origins)
    _check_layer(flag_tree, "the command line", flag_origins)
    merged = _merge(_merge(file_tree, env_tree), flag_tree)
    _apply_api_key(merged, env_tree, flag_tree, file_tree)
    _inherit_model_limits(merged)
    settings = _convert(merged, "the merged configuration", origins)
    settings = _check_values(settings, origins)
    _warn_of_old_variables(env, settings)
    return LoadedConfig(settings=settings, file=path if file_label else None, origins=origins)


# --------------------------------------------------------------------------- layers


def _config_file(flags: CliFlags, env: Mapping[str, str]) -> tuple[Path | None, bool]:
    if flags.config:
        return Path(flags.config).expanduser(), True
    if env.get("LMSTUDIO_BRIDGE_CONFIG"):
        return Path(env["LMSTUDIO_BRIDGE_CONFIG"]).expanduser(), True
    return default_config_path(env), False


def _read_toml(path: Path) -> Tree:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"The configuration file {path} does not exist. Create it, or point --config / "
            "LMSTUDIO_BRIDGE_CONFIG at an existing TOML file.",
            details={"file": str(path)},
        ) from None
    except OSError as exc:
        raise ConfigError(f"The configuration file {path} cannot be read: {exc}.", details={"file": str(path)}) from exc
    try:
        tree = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.", details={"file": str(path)}) from exc
    servers = tree.get("servers")
    if isinstance(servers, list):
        # A plain URL is the short form of a [[servers]] table with only ``url``.
        tree["servers"] = [{"url": s} if isinstance(s, str) else s for s in servers]
    return tree


_EnvValue = Callable[[str, str], object]


def _as_given(value: str, _name: str) -> object:
    return value


# The settings one environment variable gives: (key, where the tree keeps it, the variables, the first set
# wins; how the value is read, given the variable's name for its error).
_ENV_SETTINGS: Final[tuple[tuple[str, str, tuple[str, ...], _EnvValue], ...]] = (
    ("api_key", "_api_key", ("LMSTUDIO_API_KEY",), _as_given),
    # DEFAULT_MODEL: the older bridge's name, same meaning.
    ("default_model", "default_model", ("LMSTUDIO_BRIDGE_DEFAULT_MODEL", "DEFAULT_MODEL"), _as_given),
    ("tools", "tools", ("LMSTUDIO_BRIDGE_TOOLS",), lambda value, _: value.lower()),
    (
        "call_budget",
        "call_budget",
        ("LMSTUDIO_BRIDGE_CALL_BUDGET",),
        lambda value, name: _number(value, f"environment variable {name}"),
    ),
    ("log_level", "log_level", ("LMSTUDIO_BRIDGE_LOG_LEVEL",), _as_given),
    ("log_format", "log_format", ("LMSTUDIO_BRIDGE_LOG_FORMAT",), _as_given),
)


def _env_layer(env: Mapping[str, str]) -> tuple[Tree, dict[str, str]]:
    tree: Tree = {}
    origins: dict[str, str] = {}

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value and value.strip() else None

    urls: list[str] = []
    url_sources: list[str] = []
    if base := get("LMSTUDIO_BASE_URL"):
        urls.append(base)
        url_sources.append("LMSTUDIO_BASE_URL")
    if listed := get("LMSTUDIO_BRIDGE_SERVERS"):
        items = [u.strip() for u in listed.split(",") if u.strip()]
        if not items:
            raise ConfigError("LMSTUDIO_BRIDGE_SERVERS lists no URL; write e.g. http://localhost:1234,http://gpu:1234.")
        urls += items
        url_sources.append("LMSTUDIO_BRIDGE_SERVERS")
    host, port_text = get("LMSTUDIO_HOST"), get("LMSTUDIO_PORT")
    if host or port_text:
        port = DEFAULT_PORT
        if port_text is not None:
            port = _port(port_text, "environment variable LMSTUDIO_PORT")
        urls.append(_host_port_url(host or "localhost", port))
        url_sources.append("LMSTUDIO_HOST/LMSTUDIO_PORT")
    if urls:
        tree["servers"] = [{"url": u} for u in _dedupe(urls)]
        origins["servers"] = "env " + " + ".join(url_sources)
    for key, slot, names, convert in _ENV_SETTINGS:
        for name in names:
            if value := get(name):
                tree[slot] = convert(value, name)
                origins[key] = f"env {name}"
                break
    return tree, origins


def _warn_of_old_variables(env: Mapping[str, str], settings: BridgeSettings) -> None:
    """The older bridge's variables that mean less here, said on stderr (logging is not set up yet: the
    last-resort handler writes warnings there, never to stdout)."""
    log = logging.getLogger("bridge.config")
    old_model, new_model = env.get("DEFAULT_MODEL", "").strip(), env.get("LMSTUDIO_BRIDGE_DEFAULT_MODEL", "").strip()
    if old_model and new_model and old_model != new_model:
        log.warning("DEFAULT_MODEL=%s is not used: LMSTUDIO_BRIDGE_DEFAULT_MODEL=%s is set too", old_model, new_model)
    if env.get("WORKING_DIR", "").strip() and settings.tools != "compat":
        log.warning(
            "WORKING_DIR is set, the older bridge's directory for its filesystem tools: here only the compat "
            "profile's filesystem tools read it. Add --tools compat (LMSTUDIO_BRIDGE_TOOLS=compat), or unset it"
        )
    for name in ("MCP_WORKING_DIR", "MCP_FILESYSTEM_ROOT", "LMS_MAX_RETRIES", "LMS_EXTRA_NUMERIC_PARAMS"):
        if env.get(name, "").strip():
            log.warning("%s is set but not read by this bridge (the older bridge's; see docs/migrating.md)", name)


def _flag_layer(flags: CliFlags) -> tuple[Tree, dict[str, str]]:
    tree: Tree = {}
    origins: dict[str, str] = {}
    urls: list[str] = []
    sources: list[str] = []
    if flags.base_url:
        urls.append(flags.base_url)
        sources.append("--base-url")
    if flags.servers:
        urls += list(flags.servers)
        sources.append("--server")
    if flags.host or flags.port is not None:
        port = DEFAULT_PORT if flags.port is None else flags.port
        if not 0 < port < 65536:
            raise ConfigError(f"--port {port} is not a TCP port; give a number from 1 to 65535 (LM Studio uses 1234).")
        urls.append(_host_port_url(flags.host or "localhost", port))
        sources.append("--host/--port")
    if urls:
        tree["servers"] = [{"url": u} for u in _dedupe(urls)]
        origins["servers"] = "flag " + " + ".join(sources)
    if flags.api_key:
        tree["_api_key"] = flags.api_key
        origins["api_key"] = "flag --api-key"
    for name in ("default_model", "call_budget", "log_level", "log_format", "tools"):
        value = getattr(flags, name)
        if value is not None and value != "":
            tree[name] = value
            origins[name] = "flag --" + name.replace("_", "-")
    return tree, origins


def _host_port_url(host: str, port: int) -> str:
    if "://" in host:
        return f"{host.rstrip('/')}:{port}"
    userinfo, at, host = host.rpartition("@")  # user:pass@host
    if ":" in host and not host.startswith("["):  # a bare IPv6 address
        host = f"[{host}]"
    return f"http://{userinfo}{at}{host}:{port}"


def _port(text: str, where: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"The {where} is {text!r}, not a port number; set it to e.g. 1234.") from None
    if not 0 < port < 65536:
        raise ConfigError(f"The {where} is {port}, not a TCP port; give a number from 1 to 65535.")
    return port


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"The {where} is {text!r}, not a number of seconds; set it to e.g. 50.") from None


def _dedupe(urls: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for url in urls:
        try:
            key = normalize_base_url(url)
        except ConfigError:
            key = url  # reported with its key when the layer is checked
        if key not in seen:
            seen.add(key)
            out.append(url)
    return out


# --------------------------------------------------------------------------- merging


def _merge(low: Tree, high: Tree) -> Tree:
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys += _leaves(value, path + ".")
        else:
            keys.append(path)
    return keys


def _apply_api_key(merged: Tree, env_tree: Tree, flag_tree: Tree, file_tree: Tree) -> None:
    """The flag's (else the environment's) key goes to every server that does not name its own.

    A server with credentials in its URL (``http://user:pass@proxy``) names its own: the
    client would send the key instead of them.
    """
    merged.pop("_api_key", None)
    key = flag_tree.get("_api_key") or env_tree.get("_api_key")
    if key is None:
        return
    servers = merged.get("servers")
    if servers is None:
        servers = [{"url": BridgeSettings().servers[0].url}]
        merged["servers"] = servers
    merged["servers"] = [
        s if not isinstance(s, dict) or s.get("api_key") or _names_credentials(s.get("url")) else {**s, "api_key": key}
        for s in servers
    ]


def _names_credentials(url: object) -> bool:
    return isinstance(url, str) and has_credentials(url)


def _inherit_model_limits(merged: Tree) -> None:
    """A ``[models."id"]`` table takes its unset fields from ``[default_limits]``, not from the built-in defaults."""
    models = merged.get("models")
    defaults = merged.get("default_limits")
    if not isinstance(models, dict) or not isinstance(defaults, dict):
        return
    merged["models"] = {
        name: ({**defaults, **limits} if isinstance(limits, dict) else limits) for name, limits in models.items()
    }


# --------------------------------------------------------------------------- checking


def _check_layer(tree: Tree, source: str, origins: Mapping[str, str] | None = None) -> None:
    layer = {k: v for k, v in tree.items() if not k.startswith("_")}
    _check_keys(layer, BridgeSettings, "", source)
    _convert(layer, source, origins or {})


def _check_keys(data: object, struct: type[msgspec.Struct], prefix: str, source: str) -> None:
    """Unknown keys anywhere in the tree, named with their full dotted path (some nested structs allow extras)."""
    if not isinstance(data, dict):
        return  # the type check reports it
    hints = typing.get_type_hints(struct)
    known = struct.__struct_fields__
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean {prefix}{close[0]}?" if close else f" Known keys here: {', '.join(known)}."
            where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
            raise ConfigError(
                f"Unknown key {prefix}{key} in {source} (in {where}).{hint}",
                details={"key": f"{prefix}{key}", "source": source},
            )
        _check_value_keys(value, hints[key], f"{prefix}{key}", source)


def _check_value_keys(value: object, hint: object, path: str, source: str) -> None:
    for struct in _structs_in(hint):
        if isinstance(value, dict):
            _check_keys(value, struct, path + ".", source)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is list and args and isinstance(value, list):
        for i, item in enumerate(value):
            _check_value_keys(item, args[0], f"{path}[{i}]", source)
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        for name, item in value.items():
            _check_value_keys(item, args[1], f'{path}."{name}"', source)


def _structs_in(hint: object) -> list[type[msgspec.Struct]]:
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return [hint]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return [s for arg in typing.get_args(hint) for s in _structs_in(arg)]
    return []


def _convert(tree: Tree, source: str, origins: Mapping[str, str]) -> BridgeSettings:
    try:
        return msgspec.convert(tree, BridgeSettings)
    except msgspec.ValidationError as exc:
        raise _translate(exc, tree, source, origins) from None


def _translate(exc: msgspec.ValidationError, tree: Tree, source: str, origins: Mapping[str, str]) -> ConfigError:
    """Turn msgspec's ``Expected `int`, got `str` - at `$.a.b``` into a sentence naming the key and its source."""
    text = str(exc)
    problem, sep, where = text.rpartition(" - at `$")
    if not sep:
        problem, where = text, ""
    path = where.rstrip("`").lstrip(".")
    if "[...]" in path:
        path = _find_dict_key(path, tree)
    top = path.split(".")[0].split("[")[0] if path else ""
    from_ = origins.get(path) or origins.get(top) or source
    if from_.startswith("env "):
        from_ = from_.replace("env ", "environment variable ", 1)
    problem = problem.replace("Expected `", "expected `").replace("Object missing required field", "missing key")
    key = path or "(top level)"
    return ConfigError(
        f"Bad value for {key} in {from_}: {problem}. Fix that key "
        "(the README's Configuration section lists every key and its type).",
        details={"key": key, "source": from_},
    )


def _find_dict_key(path: str, tree: Tree) -> str:
    """msgspec writes ``models[...]`` for a dict key; find which model entry fails and name it."""
    head, _, rest = path.partition("[...]")
    table = tree.get(head)
    if isinstance(table, dict):
        for name, value in table.items():
            try:
                msgspec.convert(value, ModelLimits)
            except msgspec.ValidationError:
                return f'{head}."{name}"{rest}'
    return path.replace("[...]", "")


def _check_values(settings: BridgeSettings, origins: Mapping[str, str]) -> BridgeSettings:
    """Range checks the structs do not make, and normalized URLs and names."""

    def fail(key: str, why: str) -> ConfigError:
        top = key.split(".")[0].split("[")[0]
        source = origins.get(key) or origins.get(top) or "the defaults"
        source = source.replace("env ", "environment variable ", 1)
        return ConfigError(f"Bad value for {key} (from {source}): {why}", details={"key": key, "source": source})

    if not settings.servers:
        raise fail("servers", "no LLM server is configured; list at least one URL, e.g. http://localhost:1234.")
    servers = []
    names: set[str] = set()
    for i, server in enumerate(settings.servers):
        try:
            shown = normalize_base_url(server.url)
            url = normalize_base_url(server.url, keep_credentials=True)  # the client sends them as Basic auth
        except ConfigError as exc:
            raise fail(f"servers[{i}].url", exc.message) from None
        if server.api_key:
            try:
                check_api_key(server.api_key)
            except ConfigError as exc:
                raise fail(f"servers[{i}].api_key", exc.message) from None
        if server.max_concurrent is not None and server.max_concurrent < 1:
            raise fail(
                f"servers[{i}].max_concurrent",
                f"{server.max_concurrent} can run nothing; use 1 or more, or leave it out for no server-wide limit.",
            )
        if server.slots is not None and server.slots < 1:
            raise fail(
                f"servers[{i}].slots",
                f"{server.slots} can run nothing; use 1 or more, or leave it out for the models' own slots.",
            )
        name = server.name or shown.split("://", 1)[1]
        if name in names:
            raise fail(f"servers[{i}].name", f"two servers are called {name!r}; give each a different name.")
        names.add(name)
        servers.append(msgspec.structs.replace(server, url=url, name=name))
    for key, limits in [("default_limits", settings.default_limits)] + [
        (f'models."{m}"', lim) for m, lim in settings.models.items()
    ]:
        if limits.slots < 1:
            raise fail(f"{key}.slots", f"{limits.slots} slots can run nothing; use 1 or more (LM Studio runs 4).")
        if limits.queue < 0:
            raise fail(f"{key}.queue", f"a queue of {limits.queue} is impossible; use 0 or more.")
    positive = {
        "call_budget": settings.call_budget,
        "listing_timeout": settings.listing_timeout,
        "budgets.connect": settings.budgets.connect,
        "children.call_timeout": settings.children.call_timeout,
        "children.startup_timeout": settings.children.startup_timeout,
        "jobs.time_budget": settings.jobs.time_budget,
        "images.fetch_timeout": settings.images.fetch_timeout,
        "jobs.ttl": settings.jobs.ttl,
    }
    for key, value in positive.items():
        if not value > 0:
            raise fail(key, f"{value!r} is not a positive number of seconds.")
    not_negative = {
        "model_cache_ttl": settings.model_cache_ttl,
        "retry.wait_initial": settings.retry.wait_initial,
        "retry.wait_max": settings.retry.wait_max,
        "breaker.cooldown": settings.breaker.cooldown,
        "children.stop_grace": settings.children.stop_grace,
    }
    for key, value in not_negative.items():
        if value < 0:
            raise fail(key, f"{value!r} is negative; use 0 or more seconds.")
    for key, count in (
        ("jobs.max_kept", settings.jobs.max_kept),
        ("jobs.max_bytes", settings.jobs.max_bytes),
        ("jobs.max_active", settings.jobs.max_active),
        ("images.max_bytes", settings.images.max_bytes),
        ("images.max_images", settings.images.max_images),
    ):
        if count < 1:
            raise fail(key, f"{count!r} would keep no job; use 1 or more.")
    if settings.retry.attempts < 1:
        raise fail("retry.attempts", "use 1 (no retries) or more.")
    if settings.breaker.failures < 1:
        raise fail("breaker.failures", "use 1 or more consecutive failures.")
    level = settings.log_level.upper()
    if level not in LOG_LEVELS:
        raise fail("log_level", f"{settings.log_level!r} is not a log level; use one of {', '.join(LOG_LEVELS)}.")
    fmt = settings.log_format.lower()
    if fmt not in LOG_FORMATS:
        raise fail("log_format", f"{settings.log_format!r} is not a log format; use plain or json.")
    if settings.default_model is not None and not settings.default_model.strip():
        raise fail("default_model", "it is empty; name a model id or leave it unset.")
    if settings.call_budget >= 60:
        logging.getLogger("bridge.config").warning(
            "call_budget is %g s; Claude Code cuts tool calls at about 60 s, so keep it below that",
            settings.call_budget,
        )
    children = msgspec.structs.replace(
        settings.children, config_paths=[str(Path(p).expanduser()) for p in settings.children.config_paths]
    )
    return msgspec.structs.replace(settings, servers=servers, log_level=level, log_format=fmt, children=children)
