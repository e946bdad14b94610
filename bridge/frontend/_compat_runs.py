"""The ``compat`` profile's autonomous tools: a run on a standard child server of one kind.

``autonomous_filesystem_full`` and its siblings run on the child server the user configured for that
package if there is one, else on the standard package started the way the older bridge started it
(``npx -y …``, ``uvx …``), as a child of this session under the same supervision and trust rules as any
other: its destructive tools are withheld unless ``allow_tools`` names them.
"""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import anyio
from pydantic import BaseModel, ConfigDict, Field

from bridge.errors import ActorUnavailableError, BadRequestError
from bridge.frontend._args import AUTONOMOUS, MAX_RUN_ROUNDS, MaxTokens, RunAllow, RunModel, RunRounds, token_count
from bridge.frontend._format import ToolOutput
from bridge.frontend._frontend import Ctx, Frontend
from bridge.frontend._job_tools import Background
from bridge.frontend._jobs import run_as_job
from bridge.frontend._mcp_server import ToolSet, parameter, with_signature
from bridge.messages import JobWork, RunSeries, RunTask, StartChildServer

__all__ = ["register_compat_runs"]

FILESYSTEM: Final = "@modelcontextprotocol/server-filesystem"
MEMORY: Final = "@modelcontextprotocol/server-memory"
FETCH: Final = "mcp-server-fetch"
GITHUB: Final = "@modelcontextprotocol/server-github"
GITHUB_TOKEN: Final = "GITHUB_PERSONAL_ACCESS_TOKEN"

Task = Annotated[str, Field(description="What the local model should do, in plain words.", min_length=1)]
Directories = Annotated[
    str | list[str] | None,
    Field(description="The directory (or directories) the model may work in; default $WORKING_DIR, else here."),
]

GithubToken = Annotated[
    str | None, Field(description="Default: $GITHUB_PERSONAL_ACCESS_TOKEN (better than passing it here).")
]


async def _standard_run_parameters(
    ctx: Ctx,
    task: Task,
    max_rounds: RunRounds = MAX_RUN_ROUNDS,
    max_tokens: MaxTokens = "auto",
    model: RunModel = None,
    allow_tools: RunAllow = None,
    background: Background = False,
) -> ToolOutput:
    """The parameters the runs on one standard server share: their schema, written once and never called."""
    raise NotImplementedError


class SessionTask(BaseModel):
    """One task of ``autonomous_persistent_session``, with the directories it works in."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1)
    working_directory: str | list[str] | None = None


def register_compat_runs(tools: ToolSet, frontend: Frontend) -> None:
    """Add the older bridge's autonomous tools on standard child servers to ``server``."""

    async def standard(
        name: str,
        package: str,
        command: list[str],
        *,
        roots: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        children = await frontend.children()
        if children is None:
            raise ActorUnavailableError(
                "autonomous runs need child MCP servers, and this bridge was started without them "
                "(--no-child-servers); restart it without that flag"
            )
        wanted = StartChildServer(
            name=name,
            package=package,
            command=command[0],
            args=[*command[1:], *(roots or [])],
            roots=roots or [],
            env=env or {},
            env_passthrough=[GITHUB_TOKEN] if package == GITHUB and not env else [],
        )
        return await children.ask(wanted, timeout=frontend.settings.children.startup_timeout + 5.0)

    async def run(ctx: Ctx, tool: str, work: JobWork, model: str | None, background: bool) -> ToolOutput:
        route = await frontend.planner_route()
        return await run_as_job(frontend, ctx, tool=tool, work=work, route=route, model=model, background=background)

    def task_of(
        task: str,
        server: str,
        model: str | None,
        max_rounds: int,
        max_tokens: int | str | None,
        allow_tools: list[str] | None,
    ) -> RunTask:
        return RunTask(
            task=task,
            servers=[server],
            model=model or None,
            max_rounds=min(max_rounds, MAX_RUN_ROUNDS),
            max_tokens=token_count(max_tokens),
            allow=allow_tools or [],
        )

    async def directories(given: str | list[str] | None) -> list[str]:
        view = await frontend.slot.get()
        base = anyio.Path(view.working_dir)
        named = [given] if isinstance(given, str) else list(given or [])
        if not named:
            named = [view.environ.get("WORKING_DIR") or str(base)]
        found: list[str] = []
        for entry in named:
            path = await (base / await anyio.Path(entry).expanduser()).resolve()
            if path == anyio.Path(path.anchor):
                raise BadRequestError(
                    f"working_directory {entry!r} is the file system's root, which would give the model the whole "
                    "machine; name the project directory instead",
                    details={"working_directory": entry},
                )
            if not await path.is_dir():
                raise BadRequestError(
                    f"working_directory {entry!r} is not a directory here ({path}); name one that exists",
                    details={"working_directory": entry},
                )
            found.append(str(path))
        return found

    def declare_run_on(
        tool: str, doc: str, server_for: Callable[[Any], Awaitable[str]], extra: inspect.Parameter | None = None
    ) -> None:
        """A tool that runs a task on the standard server ``server_for`` starts (given ``extra``'s argument)."""

        @tools.tool(annotations=AUTONOMOUS)
        @with_signature(_standard_run_parameters, tool, doc, insert=[extra] if extra else [], at=2)
        async def run_on_standard_server(ctx: Ctx, **arguments: Any) -> ToolOutput:
            name = await server_for(arguments.pop(extra.name) if extra else None)
            model, background = arguments.pop("model"), arguments.pop("background")
            return await run(ctx, tool, task_of(server=name, model=model, **arguments), model, background)

    async def filesystem(directories_given: str | list[str] | None) -> str:
        roots = await directories(directories_given)
        return await standard("filesystem", FILESYSTEM, ["npx", "-y", FILESYSTEM], roots=roots)

    async def memory(_: None) -> str:
        return await standard("memory", MEMORY, ["npx", "-y", MEMORY])

    async def fetch(_: None) -> str:
        return await standard("fetch", FETCH, _fetch_command())

    async def github(token: str | None) -> str:
        env = {GITHUB_TOKEN: token} if token else None
        return await standard("github", GITHUB, ["npx", "-y", GITHUB], env=env)

    declare_run_on(
        "autonomous_filesystem_full",
        """A local model works through a task with the filesystem MCP server in working_directory. Tools the
        server marks destructive (writes, moves) are withheld unless allow_tools names them.""",
        filesystem,
        parameter("working_directory", Directories, None),
    )
    declare_run_on(
        "autonomous_memory_full",
        "A local model works through a task with the memory (knowledge graph) MCP server.",
        memory,
    )
    declare_run_on(
        "autonomous_fetch_full",
        "A local model works through a task with the fetch MCP server (web pages as markdown).",
        fetch,
    )
    declare_run_on(
        "autonomous_github_full",
        """A local model works through a task with the GitHub MCP server; its write tools are withheld unless
        allow_tools names them.""",
        github,
        parameter("github_token", GithubToken, None),
    )

    @tools.tool(annotations=AUTONOMOUS)
    async def autonomous_persistent_session(
        ctx: Ctx,
        tasks: Annotated[
            list[str | SessionTask],
            Field(description='Tasks in order: text, or {"task": ..., "working_directory": ...}.', min_length=1),
        ],
        initial_directory: Directories = None,
        max_rounds: Annotated[int, Field(description="Most rounds per task (over 100 is cut to 100).", ge=1)] = 100,
        max_tokens: MaxTokens = "auto",
        model: RunModel = None,
        allow_tools: RunAllow = None,
        background: Background = False,
    ) -> ToolOutput:
        """Several filesystem tasks one after another, in one job: each sees what the ones before it left.
        Returns one result per task; a failed task does not stop the rest."""
        initial = await directories(initial_directory)
        runs: list[RunTask] = []
        for item in tasks:
            text, given = (item, None) if isinstance(item, str) else (item.task, item.working_directory)
            roots = await directories(given) if given is not None else initial
            name = await standard("filesystem", FILESYSTEM, ["npx", "-y", FILESYSTEM], roots=roots)
            runs.append(task_of(text, name, model, max_rounds, max_tokens, allow_tools))
        return await run(ctx, "autonomous_persistent_session", RunSeries(tasks=runs), model, background)

    del autonomous_persistent_session


def _fetch_command() -> list[str]:
    """``uvx mcp-server-fetch`` as the older bridge ran it; where uv is not installed and the package is
    importable here, the same server with this interpreter."""
    if shutil.which("uvx") is None and importlib.util.find_spec("mcp_server_fetch") is not None:
        return [sys.executable, "-m", "mcp_server_fetch"]
    return ["uvx", FETCH]
