"""The SDK's ``MCPServer``, made to answer every failure as a typed tool result.

The one place that touches the mcp SDK's server internals (``_tool_manager``,
``_lowlevel_server``, mcp 2.x): everything else declares tools with
:meth:`ToolSet.tool` and serves a connection with :meth:`BridgeMCPServer.serve_lines`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import Any, Final, Protocol, Self

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError as SDKToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    CallToolResult,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    TextContent,
    ToolAnnotations,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from bridge.errors import BadRequestError, BridgeError, InternalError
from bridge.frontend._format import DEFAULT_OUTPUT_LIMIT, ToolOutput, cut_text, error_output

__all__ = [
    "BridgeMCPServer",
    "LineWriter",
    "ToolCatalog",
    "ToolFunction",
    "ToolSet",
    "parameter",
    "to_result",
    "tool_description",
    "with_signature",
]

log = logging.getLogger("bridge.frontend")


class LineWriter(Protocol):
    """Where one connection's messages go: each ``write`` is one whole line."""

    async def write(self, text: str) -> None: ...

    async def flush(self) -> None: ...


ToolFunction = Callable[..., Awaitable[ToolOutput]]
"""A tool as the bridge writes it: the context and the arguments in, a :class:`ToolOutput` out."""


def parameter(name: str, hint: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """One tool parameter, for :func:`with_signature`."""
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=hint)


def with_signature(
    template: ToolFunction, name: str, doc: str, *, insert: Sequence[inspect.Parameter] = (), at: int = 1
) -> Callable[[ToolFunction], ToolFunction]:
    """Make ``body(ctx, **arguments)`` the tool ``name``: ``template``'s parameters with ``insert`` placed at
    position ``at``. Tools that share most of their parameters write them once; the SDK reads the schema
    from the signature this composes."""
    shared = inspect.signature(template, eval_str=True)
    parameters = list(shared.parameters.values())
    parameters[at:at] = insert

    def shape(body: ToolFunction) -> ToolFunction:
        body.__name__ = body.__qualname__ = name
        body.__doc__ = doc
        body.__signature__ = shared.replace(parameters=parameters)  # type: ignore[attr-defined]
        body.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": ToolOutput}
        return body

    return shape


def tool_description(docstring: str) -> str:
    """A docstring as one line per paragraph: no source indentation, no wraps inside a sentence."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)


class ToolCatalog:
    """What the SDK knows of each tool (its schema and argument model), built once for every server made with it.

    The SDK builds a pydantic model from each tool's signature: ~3 ms a tool, ~80 ms for the bridge's
    tools, which a shared bridge paid for every session and the tests for every server. A tool declared
    again with the same name, description, annotations and signature gets a copy of the first one's
    that calls the new function (each server's tools close over its own front end).
    """

    def __init__(self) -> None:
        self._built: dict[tuple[str, str, str, str], Tool] = {}

    def tool(self, handler: Callable[..., Awaitable[CallToolResult]], annotations: ToolAnnotations | None) -> Tool:
        description = tool_description(handler.__doc__ or "")
        key = (handler.__name__, description, str(inspect.signature(handler)), repr(annotations))
        built = self._built.get(key)
        if built is not None:
            return built.model_copy(update={"fn": handler})
        built = self._built[key] = Tool.from_function(handler, description=description, annotations=annotations)
        return built


class ToolSet:
    """The tools of one server being made: ``@tools.tool()`` declares each, and the server is made of them."""

    def __init__(self, catalog: ToolCatalog, *, output_limit: int) -> None:
        self.tools: list[Tool] = []
        self._catalog = catalog
        self._output_limit = output_limit

    def tool(self, *, annotations: ToolAnnotations | None = None) -> Callable[[ToolFunction], ToolFunction]:
        """Declare ``fn(ctx, **arguments) -> ToolOutput`` a tool; a :class:`BridgeError` it raises is its result.

        The description is the docstring as a client should show it (the SDK would pass source
        indentation and line wraps on verbatim); the schema is ``fn``'s signature.
        """

        def declare(fn: ToolFunction) -> ToolFunction:
            limit = self._output_limit

            @functools.wraps(fn)
            async def handler(*args: Any, **kwargs: Any) -> CallToolResult:
                try:
                    output = await fn(*args, **kwargs)
                except BridgeError as error:
                    output = error_output(error, limit)
                return to_result(output)

            # The SDK reads the schema from the signature and the hints: fn's, answering a CallToolResult.
            signature = inspect.signature(fn, eval_str=True).replace(return_annotation=CallToolResult)
            handler.__signature__ = signature  # type: ignore[attr-defined]
            handler.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {
                "return": CallToolResult
            }
            self.tools.append(self._catalog.tool(handler, annotations))
            return fn

        return declare


class BridgeMCPServer(MCPServer[Any]):
    """``MCPServer`` whose every tool failure is a typed tool result, never a traceback or bare string.

    Arguments that fail the input schema, or that it does not declare, become ``bad_request``
    results; an unknown tool name too; anything unexpected (a bug) becomes an ``internal`` result and is logged.
    Its tools are a :class:`ToolSet`'s, given as ``tools=``.
    """

    output_limit: int = DEFAULT_OUTPUT_LIMIT

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        unknown = self._unknown_arguments(name, arguments)
        if unknown:
            return to_result(error_output(unknown, self.output_limit))
        try:
            return await super().call_tool(name, arguments, context)
        except SDKToolError as exc:
            cause = exc.__cause__
            error: BridgeError
            if isinstance(cause, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in cause.errors()
                )
                error = BadRequestError(
                    f"invalid arguments for {name}: {problems}. Fix them and call again",
                    details={"tool": name},
                )
            elif name not in (known_tools := self._tool_names()):
                known = ", ".join(known_tools)
                error = BadRequestError(f"there is no tool {name!r}; the tools are {known}", details={"tool": name})
            elif isinstance(cause, BridgeError):
                error = cause
            else:
                log.exception("tool %s failed unexpectedly", name)
                error = InternalError(
                    f"the bridge failed while running {name} ({type(cause or exc).__name__}); this is a bug in "
                    "lmstudio-bridge. The bridge keeps running; retry, and report it if it happens again",
                    details={"tool": name},
                )
            return to_result(error_output(error, self.output_limit))

    async def serve_lines(self, lines: AsyncIterable[str], wire: LineWriter) -> None:
        """Serve one MCP connection of newline-delimited JSON-RPC until ``lines`` ends.

        ``stdio_server`` with explicit streams is the SDK's public framing; running the low-level
        server on it is not public in mcp 2.x (``MCPServer.run_stdio_async`` claims the process's
        own stdio), hence ``_lowlevel_server``. ``serve`` and the shared bridge's sessions use this.
        Lines the SDK would drop unanswered are answered first (:class:`ScreenedLines`).
        """
        lowlevel = self._lowlevel_server
        checked = ScreenedLines(lines)
        async with stdio_server(stdin=checked, stdout=wire) as (read, write):  # type: ignore[arg-type]
            checked.answer_to(write)
            await lowlevel.run(read, write, lowlevel.create_initialization_options())

    def _unknown_arguments(self, name: str, arguments: dict[str, Any]) -> BadRequestError | None:
        """Arguments the tool does not declare: refused, where the SDK would drop them unseen (a typo'd
        ``max_token`` would otherwise run with the default and look as if it had been honoured)."""
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            return None  # the SDK's own path answers an unknown tool
        declared = tool.parameters.get("properties", {})
        unknown = [key for key in arguments if key not in declared]
        if not unknown:
            return None
        names = ", ".join(repr(cut_text(key, 80)) for key in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        known = ", ".join(declared) or "none"
        return BadRequestError(
            f"unknown argument{'s' if len(unknown) > 1 else ''} {names}{more} for {name}; its arguments are "
            f"{known}. Fix the names and call again",
            details={"tool": name},
        )

    def _tool_names(self) -> list[str]:
        # mcp 2.x has no public synchronous way to list a server's tools; the tool manager is private.
        return [t.name for t in self._tool_manager.list_tools()]


def to_result(output: ToolOutput) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=output.text)],
        structured_content=output.structured,
        is_error=output.is_error,
    )


# --------------------------------------------------------------------------- lines that are not JSON-RPC


class _Sender(Protocol):
    async def send(self, item: SessionMessage, /) -> None: ...


_PASS: Final = "pass"
_DROP: Final = "drop"


class ScreenedLines:
    """A connection's lines, less those that are not JSON-RPC messages, which get their JSON-RPC error here.

    The SDK drops a line it cannot read (not JSON, not one message, a wrong ``jsonrpc``, params that are
    not an object) with a debug log, and takes a request whose id is not a string or an integer as a
    notification: either way the client waits for an answer forever. Here such a line is answered, in
    order with the others: a parse error (-32700) or an invalid request (-32600), with the request's id
    when one can be read (Python's parser reads deeper nesting and lone surrogates than the SDK's), else
    ``"id": null``. Blank lines and stray responses are dropped (JSON-RPC never answers a response).
    An object, not an async generator: nothing is left for the garbage collector to finalise.
    """

    def __init__(self, lines: AsyncIterable[str]) -> None:
        self._lines = aiter(lines)
        self._write: _Sender | None = None
        self._open = anyio.Event()

    def answer_to(self, write: _Sender) -> None:
        """Where the errors go: the connection's write stream, which keeps whole messages in order."""
        self._write = write
        self._open.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        while True:
            line = await anext(self._lines)
            verdict = screen(line)
            if verdict == _PASS:
                return line
            if isinstance(verdict, JSONRPCError):
                log.info("answered a line that is not a JSON-RPC message: %s", verdict.error.message)
                await self._open.wait()
                assert self._write is not None
                with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                    await self._write.send(SessionMessage(verdict))


def screen(line: str) -> JSONRPCError | str:
    """``_PASS`` (a message the SDK reads), ``_DROP`` (nothing to answer), or the error to answer with."""
    if not line.strip():
        return _DROP
    try:
        message = jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError as exc:
        return _refusal(line, exc)
    if isinstance(message, JSONRPCNotification):  # rare from a client: initialized, cancelled
        parsed = _loads(line)
        if isinstance(parsed, dict) and "id" in parsed:  # pydantic dropped an id of the wrong type
            kind = type(parsed["id"]).__name__
            return _error(None, INVALID_REQUEST, f"invalid request: the id must be a string or an integer, not {kind}")
    return _PASS


def _refusal(line: str, exc: ValidationError) -> JSONRPCError | str:
    parsed = _loads(line)
    problems = exc.errors(include_url=False, include_input=False)
    if parsed is _UNREADABLE or not isinstance(parsed, dict):
        what = "not JSON" if parsed is _UNREADABLE else "not a JSON object (one message per line, no batches)"
        return _error(None, PARSE_ERROR if parsed is _UNREADABLE else INVALID_REQUEST, f"the line is {what}")
    if "method" not in parsed and ("result" in parsed or "error" in parsed):
        return _DROP  # a response to nothing this server asked
    ident = parsed.get("id")
    valid_id = (isinstance(ident, int) and not isinstance(ident, bool)) or (isinstance(ident, str) and _utf8(ident))
    request_id = ident if valid_id else None
    if any(p["type"] == "json_invalid" for p in problems):
        return _error(request_id, PARSE_ERROR, f"parse error: {cut_text(problems[0]['msg'], 200)}")
    branch = "JSONRPCRequest" if "id" in parsed else "JSONRPCNotification"
    mine = [p for p in problems if p["loc"][:1] == (branch,)] or problems
    details = "; ".join(f"{'.'.join(str(x) for x in p['loc'][1:]) or 'message'}: {p['msg']}" for p in mine[:3])
    return _error(request_id, INVALID_REQUEST, cut_text(f"invalid request: {details}", 300))


_UNREADABLE: Final = object()


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return _UNREADABLE


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: it could not be written back
        return False
    return True


def _error(request_id: str | int | None, code: int, message: str) -> JSONRPCError:
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))
