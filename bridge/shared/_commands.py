"""The shared-mode commands: ``serve --shared`` (the relay) and ``daemon`` (run, status, stop)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from typing import Any

import anyio
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from bridge.errors import BridgeError
from bridge.settings import BridgeSettings
from bridge.shared._attach import Attach, encode_attach
from bridge.shared._identity import shared_name
from bridge.shared._paths import SharedPaths, shared_paths
from bridge.shared._relay import relay
from bridge.shared._start import connect, locked

__all__ = ["ask_daemon", "detach", "paths_for", "run_daemon", "run_relay"]

_ANSWER_TIMEOUT = 10.0


def paths_for(settings: BridgeSettings) -> SharedPaths:
    """The files of the shared bridge that these settings (and this version) use."""
    import bridge

    return shared_paths(shared_name(settings, str(bridge.__version__)), os.environ)


def run_relay(settings: BridgeSettings, *, child_servers: bool, output_limit: int | None, backend: str) -> int:
    attach = Attach(
        cwd=os.getcwd(),
        environ=dict(os.environ),
        children=settings.children if child_servers else None,
        output_limit=output_limit,
        tools=settings.tools,
        pid=os.getpid(),
    )
    try:
        paths = paths_for(settings)
        anyio.run(relay, settings, paths, attach, backend=backend)
    except BridgeError as exc:
        print(f"lmstudio-bridge serve --shared: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


async def ask_daemon(paths: SharedPaths, kind: str) -> dict[str, Any] | None:
    """``status`` or ``stop`` to the shared bridge of ``paths``; ``None`` when none runs."""
    stream = await connect(paths)
    if stream is None:
        return None
    async with stream:
        await stream.send(encode_attach(Attach(kind=kind, pid=os.getpid())))  # type: ignore[arg-type]
        with anyio.fail_after(_ANSWER_TIMEOUT):
            line = await BufferedByteReceiveStream(stream).receive_until(b"\n", 1 << 20)
    answer: dict[str, Any] = msgspec.json.decode(line)
    return answer


def run_daemon(settings: BridgeSettings, *, command: str, backend: str, ready_fd: int | None, as_json: bool) -> int:
    paths = paths_for(settings)
    if command in ("status", "stop"):
        answer = anyio.run(ask_daemon, paths, command, backend=backend)
        if answer is None:
            print(f"no shared bridge runs for these settings (socket {paths.socket})", file=sys.stderr)
            return 1 if command == "status" else 0
        print(json.dumps(answer, indent=None if as_json else 2))
        return 0
    anyio.run(_run_daemon, settings, paths, ready_fd, backend=backend)
    return 0


def detach() -> None:
    """Fork; the parent exits at once, so the bridge is nobody's child; stdin then reads /dev/null."""
    if os.fork() != 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


async def _run_daemon(settings: BridgeSettings, paths: SharedPaths, ready_fd: int | None) -> None:
    import bridge
    from bridge.shared.daemon import serve_shared

    serve = functools.partial(serve_shared, settings, paths, version=str(bridge.__version__))
    async with anyio.create_task_group() as tg:
        if ready_fd is not None:  # started by a relay, which holds the lock and waits on this pipe
            await tg.start(serve)
            with contextlib.suppress(OSError):
                os.write(ready_fd, b"ready\n")
            os.close(ready_fd)
            return
        async with locked(paths):  # by hand: the lock only until the socket listens
            existing = await connect(paths)
            if existing is not None:
                await existing.aclose()
                print(f"a shared bridge already runs for these settings on {paths.socket}", file=sys.stderr)
                return
            await tg.start(serve)
