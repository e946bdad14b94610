"""Generated garbage on ``serve``'s stdin (issue 20): the server lives, stdout stays JSON-RPC, every id is answered.

One ``python -m bridge serve`` process per test (on the test's own event loop: asyncio or trio) against
the simulator in another process; hypothesis then feeds it many generated lines per example: random
bytes, text that is not JSON, JSON that is not JSON-RPC (arrays, numbers, objects without a method,
a wrong ``jsonrpc`` version, ids of the wrong type), unknown methods, params of the wrong type, huge
and odd ids, deeply nested JSON, lone surrogates, responses nobody asked for, odd notifications,
interleaved with valid requests. After each example:

* every line on stdout parsed as JSON-RPC 2.0;
* every request that carries a readable id got exactly one response with that id (a result or an error);
* a line without a readable id (not JSON, not an object, an id of the wrong type) got at most one error
  with ``"id": null``, and those that must (text that is not JSON, an id that cannot be one) got one;
* responses and notifications got nothing;
* the process still runs, and a last ``tools/call`` of ``bridge_status`` succeeds.

At the end stdin is closed and the process exits 0 within its deadline, with no traceback on stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import anyio
import pytest
from anyio.abc import Process
from hypothesis import event, example, given
from hypothesis import strategies as st

from bridge.sim.testing import SimProcess
from tests._stdio import INITIALIZE, INITIALIZED, clean_env, serve_args, sim_fixture
from tests.test_frontend_stdio import SIM_CONFIG

QWEN = "qwen/qwen3-coder-30b"

EXAMPLE_DEADLINE: Final = 20.0
"""Seconds one example's lines may take to be answered (a bound against hangs, not a timing check)."""
EXIT_DEADLINE: Final = 30.0


METHODS: Final = (
    "ping",
    "tools/list",
    "tools/call",
    "initialize",
    "resources/list",
    "prompts/list",
    "logging/setLevel",
)


# --------------------------------------------------------------------------- the server and its wire


sim = sim_fixture(SIM_CONFIG)


class Wire:
    """``serve``'s stdin and stdout: raw lines in, JSON-RPC messages out (every stdout line must parse)."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self._buffer = bytearray()
        self._ids = 1000

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(data)

    async def receive(self) -> dict[str, Any]:
        """The next line of stdout, which must be one JSON-RPC 2.0 message."""
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            try:
                self._buffer += await self.process.stdout.receive()
            except anyio.EndOfStream:
                pytest.fail(f"stdout ended: the server died (exit {self.process.returncode}); {self._buffer[:200]!r}")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        try:
            message = json.loads(line)
        except ValueError:
            pytest.fail(f"a line on stdout that is not JSON: {line[:300]!r}")
        assert isinstance(message, dict), line[:300]
        assert message.get("jsonrpc") == "2.0", line[:300]
        if "id" in message and "method" not in message:
            assert ("result" in message) != ("error" in message), line[:300]
        return message


@pytest.fixture
def stderr_log(tmp_path: Path) -> Iterator[TextIO]:
    """Where the server's stderr goes (a real file: the child process writes to it)."""
    with open(tmp_path / "serve-stderr.log", "w+", encoding="utf-8") as log:
        yield log


@pytest.fixture
async def wire(sim: SimProcess, tmp_path: Path, stderr_log: TextIO) -> AsyncIterator[Wire]:
    """One ``serve`` process on the test's event loop, initialized; at the end stdin is closed, the exit
    awaited, and the process killed by its pid if it is still there."""
    process = await anyio.open_process(
        [sys.executable, *serve_args(sim.url, "--call-budget", "15")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr_log,
        env=clean_env(tmp_path),
    )
    try:
        served = Wire(process)
        await served.send(json.dumps(INITIALIZE).encode() + b"\n")
        with anyio.fail_after(EXAMPLE_DEADLINE):
            reply = await served.receive()
        assert reply["id"] == INITIALIZE["id"], reply
        await served.send(json.dumps(INITIALIZED).encode() + b"\n")
        yield served
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(EXIT_DEADLINE):
            await process.wait()
        assert process.returncode == 0
        stderr_log.seek(0)
        logged = stderr_log.read()
        assert "Traceback" not in logged, logged[-3000:]
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            with anyio.move_on_after(EXIT_DEADLINE, shield=True):
                await process.wait()
        await process.aclose()


# --------------------------------------------------------------------------- generated lines


@dataclass(frozen=True)
class Line:
    """One generated line, as a recipe: ``kind`` and its ``payload``; ids are given when it is sent."""

    kind: str
    payload: Any = None
    id_style: str = "plain"

    def __repr__(self) -> str:  # huge payloads are shown by their size
        text = repr(self.payload)
        shown = text if len(text) <= 100 else f"{text[:80]}…<{len(text)} chars>"
        return f"Line({self.kind!r}, {shown}, id_style={self.id_style!r})"


@dataclass
class Expect:
    """What one line must get back."""

    answer: Any = None  # the id that must be answered exactly once
    answer_ok: bool = False  # ... with a result that is not a tool error
    id_or_null: Any = None  # an id that must be answered, or else a null-id error (unreadable when too deep)
    null: str = "never"  # "must", "may" or "never" get an error with id null


@dataclass
class Sent:
    data: bytearray = field(default_factory=bytearray)
    expects: list[Expect] = field(default_factory=list)


def _dumps(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def render(line: Line, next_id: Callable[[], int]) -> tuple[bytes, Expect]:
    """The bytes of a line and what it must get back."""
    n = next_id()
    ident: Any = {
        "plain": n,
        "huge": 10**30 + n,
        "negative": -(2**63) - n,
        "long": "id-" * 2000 + str(n),
        "odd": f"\u202e\x00\U0001f600 {n}",
    }[line.id_style]
    kind, p = line.kind, line.payload
    if kind == "bytes":  # random bytes: not JSON-RPC; any answer has a null id
        data = bytes(p).replace(b"\n", b" ")
        return data + b"\n", Expect(null="may" if data.strip() else "never")
    if kind == "text":  # not JSON at all
        return ("not json: " + p.replace("\n", " ")).encode("utf-8", "replace") + b"\n", Expect(null="must")
    if kind == "json_not_object":  # a number, a string, an array (a batch too): not one JSON-RPC message
        return _dumps(p), Expect(null="must")
    if kind == "bad_version":
        message = {"jsonrpc": p, "id": ident, "method": "ping"}
        if p == "<missing>":
            del message["jsonrpc"]
        return _dumps(message), Expect(answer=ident)
    if kind == "no_method":
        return _dumps({"jsonrpc": "2.0", "id": ident, **p}), Expect(answer=ident)
    if kind == "bad_method":  # unknown, or not a string
        return _dumps({"jsonrpc": "2.0", "id": ident, "method": p}), Expect(answer=ident)
    if kind == "bad_params":  # params of the wrong type for a known method
        method, params = p
        return _dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params}), Expect(answer=ident)
    if kind == "bad_id":  # an id that cannot be one (float, bool, null, array, object): no id to answer with
        return _dumps({"jsonrpc": "2.0", "id": p, "method": "ping"}), Expect(null="must")
    if kind == "bad_tool_call":  # tools/call with odd params or arguments: a typed answer
        return _dumps({"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": p}), Expect(answer=ident)
    if kind == "deep":  # nested past what the SDK's parser takes
        depth, where = p
        if where == "bare":
            return _deep(depth).encode() + b"\n", Expect(null="must")
        head = f'{{"jsonrpc":"2.0","id":{json.dumps(ident)},"method":"ping","params":{{"d":'
        data = (head + _deep(depth) + "}}").encode()
        return data + b"\n", Expect(id_or_null=ident) if depth > 900 else Expect(answer=ident)
    if kind == "surrogate":  # a lone surrogate escape: valid JSON text, not valid Unicode
        body = '{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"chat_completion",'
        body += '"arguments":{"prompt":"%s"}}}'
        return (body % (json.dumps(ident), p)).encode() + b"\n", Expect(answer=ident)
    if kind == "invalid_utf8":  # bytes that are not UTF-8 inside a valid request's string
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(ident).encode() + b',"method":"ping","params":{"x":"'
        return head + bytes(p).replace(b"\n", b" ").replace(b'"', b"'").replace(b"\\", b"/") + b'"}}\n', Expect(
            answer=ident
        )
    if kind == "response":  # an answer to a request the server never sent: nothing comes back
        return _dumps({"jsonrpc": "2.0", "id": f"nope-{n}", **p}), Expect()
    if kind == "notification":  # unknown or odd notifications: nothing comes back
        method, params = p
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        # Params that are not an object make it an invalid request, which JSON-RPC answers with a null id.
        return _dumps(message), Expect(null="never" if params is None or isinstance(params, dict) else "must")
    if kind == "valid":  # a good request between the garbage
        if p == "tools/call":
            params = {"name": "chat_completion", "arguments": {"prompt": "hi", "model": QWEN, "max_tokens": 4}}
            return _dumps({"jsonrpc": "2.0", "id": ident, "method": p, "params": params}), Expect(
                answer=ident, answer_ok=True
            )
        return _dumps({"jsonrpc": "2.0", "id": ident, "method": p}), Expect(answer=ident, answer_ok=True)
    if kind == "huge":  # megabytes on one line
        size, valid = p
        if valid:
            params = {"name": "generate_embeddings", "arguments": {"text": "a" * size}}
            return _dumps({"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": params}), Expect(
                answer=ident
            )
        return b"x" * size + b"\n", Expect(null="must")
    raise AssertionError(kind)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
json_non_objects = json_scalars | st.lists(json_values, max_size=3)
ids = st.sampled_from(["plain", "huge", "negative", "long", "odd"])
not_an_object = json_non_objects | st.just([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])


def _line(kind: str, payload: st.SearchStrategy[Any]) -> st.SearchStrategy[Line]:
    return st.builds(Line, st.just(kind), payload, ids)


lines = st.one_of(
    _line("bytes", st.binary(max_size=120)),
    _line("text", st.text(max_size=60)),
    _line("json_not_object", not_an_object),
    _line("bad_version", st.sampled_from(["1.0", "2", 2.0, None, "<missing>", ""])),
    _line(
        "no_method",
        st.dictionaries(st.sampled_from(["params", "x", "methd", "Method", "jsonrpc2"]), json_values, max_size=3),
    ),
    _line("bad_method", st.text(max_size=30).filter(lambda m: m not in METHODS) | st.integers() | st.none()),
    _line("bad_params", st.tuples(st.sampled_from(METHODS), json_non_objects)),
    _line("bad_id", st.sampled_from([1.5, -0.5, True, False, None, [], [1], {}, {"id": 1}])),
    _line(
        "bad_tool_call",
        st.one_of(
            st.dictionaries(st.sampled_from(["name", "arguments", "_meta", "x"]), json_values, max_size=3),
            st.builds(
                lambda name, args: {"name": name, "arguments": args},
                st.sampled_from(["chat_completion", "bridge_status", "no_such_tool", "", "\x00"]),
                json_values,
            ),
        ),
    ),
    _line("deep", st.tuples(st.sampled_from([255, 600, 5000, 100_000]), st.sampled_from(["bare", "params"]))),
    _line("surrogate", st.sampled_from(["\\ud800", "\\udfff", "a\\ud83d", "\\udc00\\ud800"])),
    _line("invalid_utf8", st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\x80abc"])),
    _line(
        "response",
        st.sampled_from([{"result": {}}, {"result": 5}, {"error": {"code": 1, "message": "x"}}, {"error": "x"}]),
    ),
    _line(
        "notification",
        st.tuples(
            st.sampled_from(["notifications/whatever", "notifications/cancelled", "notifications/progress", "x"]),
            st.none() | json_values | st.just({"requestId": "nope", "reason": 5}),
        ),
    ),
    _line("valid", st.sampled_from(["ping", "tools/list", "tools/call"])),
    _line("huge", st.tuples(st.sampled_from([1_000_000, 3_000_000]), st.booleans())),
)


# --------------------------------------------------------------------------- one example


async def exchange(wire: Wire, batch: list[Line]) -> None:
    """Send the lines and a last good call; read until every id is answered; check what came back."""
    sent = Sent()
    for line in batch:
        event(line.kind)
        data, expect = render(line, wire.next_id)
        sent.data += data
        sent.expects.append(expect)
    last = wire.next_id()
    good_call = {"jsonrpc": "2.0", "id": last, "method": "tools/call", "params": {"name": "bridge_status"}}
    sent.data += _dumps(good_call)

    must = {e.answer for e in sent.expects if e.answer is not None} | {last}
    optional = {e.id_or_null for e in sent.expects if e.id_or_null is not None}
    ok = {e.answer for e in sent.expects if e.answer_ok}
    answered: dict[Any, dict[str, Any]] = {}
    nulls = 0
    with anyio.fail_after(EXAMPLE_DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wire.send, bytes(sent.data))  # read while writing: megabytes do not fit a pipe
            while not must <= set(answered):
                message = await wire.receive()
                if "method" in message:
                    continue  # the server's own notifications (logging, progress) and requests
                ident = message.get("id")
                if ident is None:
                    assert "error" in message, message
                    nulls += 1
                    continue
                assert ident in must | optional, f"an answer to an id nobody sent: {str(message)[:300]}"
                assert ident not in answered, f"two answers to one id: {str(message)[:300]}"
                answered[ident] = message
    assert wire.process.returncode is None, "the server died"
    for ident in ok:
        assert "result" in answered[ident], str(answered[ident])[:300]
        assert not answered[ident]["result"].get("isError"), str(answered[ident])[:300]
    status = answered[last]
    assert "result" in status, str(status)[:300]
    assert status["result"]["isError"] is False, str(status)[:300]
    at_least = sum(e.null == "must" for e in sent.expects) + len(optional - set(answered))
    at_most = sum(e.null in ("must", "may") for e in sent.expects) + len(optional - set(answered))
    assert at_least <= nulls <= at_most, f"{nulls} errors with a null id; expected {at_least} to {at_most}"


@given(batch=st.lists(lines, min_size=8, max_size=40))
# Found by this test: a request the SDK cannot read as JSON-RPC (here a wrong jsonrpc version) was dropped
# with a debug log, and its client waited for the answer forever; now it gets -32600 with its id.
@example(batch=[Line("bad_version", "1.0", "huge")])
# Found by this test: a line that is not JSON got no parse error (-32700, id null).
@example(batch=[Line("text", "")])
# The same defect, by kind: an id of the wrong type (taken for a notification), params that are not an
# object, a JSON-RPC batch, a request too deep for the SDK's parser (its id read by Python's), a lone surrogate.
@example(batch=[Line("bad_id", 1.5), Line("bad_id", None), Line("bad_params", ("tools/list", []))])
@example(
    batch=[Line("json_not_object", [{"jsonrpc": "2.0", "id": 1, "method": "ping"}]), Line("deep", (600, "params"))]
)
@example(batch=[Line("surrogate", "\\ud800"), Line("notification", ("x", 5)), Line("valid", "tools/call")])
async def test_garbage_on_stdin_gets_json_rpc_answers_and_the_server_lives(wire: Wire, batch: list[Line]) -> None:
    await exchange(wire, batch)


def test_every_kind_of_line_renders() -> None:
    """The recipes themselves (no server): each kind makes one line and a definite expectation."""
    counter = iter(range(1, 100))
    kinds = {
        "bytes": b"\x00\xff",
        "text": "x",
        "json_not_object": [1],
        "bad_version": "1.0",
        "no_method": {},
        "bad_method": 5,
        "bad_params": ("ping", []),
        "bad_id": 1.5,
        "bad_tool_call": {},
        "deep": (5000, "params"),
        "surrogate": "\\ud800",
        "invalid_utf8": b"\xff",
        "response": {"result": {}},
        "notification": ("x", None),
        "valid": "ping",
        "huge": (10, False),
    }
    for kind, payload in kinds.items():
        data, _ = render(Line(kind, payload), lambda: next(counter))
        assert data.endswith(b"\n")
        assert data.count(b"\n") == 1, kind
