"""The bridge's settings, as typed structs with sane defaults.

Loading them (CLI flags > environment > TOML file > defaults) is
:mod:`bridge.config`'s job; everything else only reads a :class:`BridgeSettings`.
All durations are in seconds.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import msgspec

__all__ = [
    "BreakerSettings",
    "BridgeSettings",
    "Budgets",
    "ChildSettings",
    "ImageSettings",
    "JobSettings",
    "ModelLimits",
    "RetrySettings",
    "ServerSettings",
    "server_name",
]


class Budgets(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds allowed for each phase of a call; ``None`` disables a budget.

    Args:
        connect: Establishing the TCP connection (httpx connect timeout).
        first_token: From sending the request to the first generated token
            (streaming), covering JIT loading and queueing in the server.
        idle: Longest gap between two pieces of a stream after the first token.
        total: The whole call, from start to the last byte.
    """

    connect: float = 10.0
    first_token: float | None = 300.0
    idle: float | None = 60.0
    total: float | None = 900.0

    def __post_init__(self) -> None:
        for name in ("connect", "first_token", "idle", "total"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"budgets.{name} must be a positive number of seconds or None, got {value!r}")


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One LLM server. ``name`` defaults to ``host:port`` of the URL.

    ``url`` may carry credentials (``http://user:pass@proxy:8080``, a reverse proxy's): the
    client sends them as Basic auth (``api_key``, a bearer token, takes precedence) and shows
    the URL without them everywhere else.

    ``max_concurrent``: requests the server runs at once for all its models together, when that
    is fewer than the models' slots add up to (llama-cpp-python: 1; Ollama: its
    ``OLLAMA_NUM_PARALLEL`` times its loaded models). Requests past it wait in the bridge, in order.
    """

    url: str
    name: str | None = None
    api_key: str | None = None
    max_concurrent: int | None = None
    slots: int | None = None
    """Requests each model runs at once on this server (LM Studio's parallel predictions); unset: the
    model's ``slots``. A model on several servers gets a pool of slots on each."""


def server_name(server: ServerSettings) -> str:
    """The name a server is known by: its configured name, else ``host:port`` (never the URL's ``user:pass@``)."""
    if server.name:
        return server.name
    parts = urlsplit(server.url if "://" in server.url else f"http://{server.url}")
    return parts.netloc.rpartition("@")[2] or server.url.rpartition("@")[2]


class ModelLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How much of one model the bridge uses at once.

    ``slots`` matches LM Studio's default of 4 parallel predictions per loaded model;
    requests past ``slots + queue`` are refused with ``busy`` instead of waiting unboundedly.
    ``context_length``: the model's context, for a server that does not report it (vLLM,
    llama-cpp-python, Ollama); what a server reports comes first.
    """

    slots: int = 4
    queue: int = 64
    context_length: int | None = None

    def __post_init__(self) -> None:
        if self.context_length is not None and self.context_length < 1:
            raise ValueError(f"context_length must be a positive number of tokens, got {self.context_length!r}")


class RetrySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retries of transient failures (connect errors, 5xx, 429, model unloaded); never of 4xx or long reads."""

    attempts: int = 3
    wait_initial: float = 0.2
    wait_max: float = 5.0


class BreakerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per server: after ``failures`` consecutive connection failures, fail fast for ``cooldown`` s, then probe."""

    failures: int = 3
    cooldown: float = 5.0


class ChildSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Child MCP servers: extra config files, per-call deadline, stop grace.

    ``discover``: also read the usual places ($MCP_JSON_PATH, ./.mcp.json, ~/.lmstudio/mcp.json,
    ~/.mcp.json); off, only ``config_paths`` are read. ``approved_project_servers``: names from a
    project's ``./.mcp.json`` that may start without Claude Code's approval (see
    :mod:`bridge.children.approval`).
    """

    config_paths: list[str] = msgspec.field(default_factory=list)
    approved_project_servers: list[str] = msgspec.field(default_factory=list)
    discover: bool = True
    call_timeout: float = 60.0
    startup_timeout: float = 30.0
    stop_grace: float = 2.0
    watch: bool = True


class ImageSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Images a caller passes to a vision model (``images`` on chat_completion and batch_chat items).

    ``allowed_roots``: the directories image paths may be under (default: the session's working
    directory). ``allow_private_urls``: also fetch URLs on loopback, private and link-local addresses.
    """

    allowed_roots: list[str] = msgspec.field(default_factory=list)
    max_bytes: int = 20 * 1024 * 1024
    max_images: int = 16
    fetch_timeout: float = 10.0
    allow_private_urls: bool = False


class JobSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Work that outlives one tool call (``background: true``, or a call that ran out of its budget).

    ``on_budget``: ``"job"`` keeps a call that runs out of ``call_budget`` going as a job (its
    timeout result names the job); ``"cut"`` stops it there, as a client timeout would.
    ``time_budget``: seconds one job may run. ``ttl``: seconds a finished job's result is kept.
    ``max_kept`` / ``max_bytes``: finished jobs kept at most (the oldest go first);
    ``max_active``: jobs queued or running at once, past which new ones are refused as ``busy``.
    """

    on_budget: Literal["job", "cut"] = "job"
    time_budget: float = 3600.0
    ttl: float = 3600.0
    max_kept: int = 1000
    max_bytes: int = 64 * 1024 * 1024
    max_active: int = 10_000


class BridgeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the bridge can be told.

    ``call_budget`` is the time budget of one MCP tool call; it stays below Claude Code's
    tool timeout so a slow model returns a typed timeout (with what it has) instead of
    being cut off by the client.
    """

    servers: list[ServerSettings] = msgspec.field(default_factory=lambda: [ServerSettings(url="http://localhost:1234")])
    default_model: str | None = None
    default_limits: ModelLimits = ModelLimits()
    models: dict[str, ModelLimits] = msgspec.field(default_factory=dict)
    budgets: Budgets = Budgets()
    call_budget: float = 55.0
    model_cache_ttl: float = 10.0
    listing_timeout: float = 3.0
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()
    children: ChildSettings = ChildSettings()
    jobs: JobSettings = JobSettings()
    images: ImageSettings = ImageSettings()
    tools: Literal["default", "compat"] = "default"
    """``compat`` adds the older LM Studio bridge's remaining tools, as aliases (docs/migrating.md)."""
    log_level: str = "INFO"
    log_format: str = "plain"
    idle_exit: float = 600.0
    """Seconds a shared bridge (``serve --shared``, ``daemon``) keeps running with no session attached."""

    def limits_for(self, model: str) -> ModelLimits:
        return self.models.get(model, self.default_limits)
