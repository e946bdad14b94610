"""Reaching the shared bridge: connect, or start exactly one and then connect.

Ten sessions that start at the same instant must end with one bridge. The
first to find no socket takes the bridge's lock file (``flock``), looks again,
and only then starts one; the others wait on the lock and then find the
socket. The new bridge says it is ready by writing to a pipe its starter
holds (its death closes the pipe), so nobody polls or sleeps.

The bridge is started detached: ``python -m bridge daemon --detach`` reads the
settings from its stdin, forks, and its parent exits at once, so the bridge is
nobody's child (no zombie when it exits) and outlives the session that
started it. Its stderr goes to the log file next to the socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import AsyncIterator
from typing import Final

import anyio
import anyio.to_thread
import msgspec
import sniffio
from anyio.abc import SocketStream

from bridge.errors import ActorUnavailableError
from bridge.settings import BridgeSettings
from bridge.shared._paths import SharedPaths

__all__ = ["START_TIMEOUT", "connect", "connect_or_start", "locked", "start_detached"]

START_TIMEOUT: Final = 30.0
"""Seconds to wait for the lock and for a new shared bridge to be ready."""
_LOG_LIMIT: Final = 8 << 20  # a log past this is started afresh when a new bridge starts


async def connect(paths: SharedPaths) -> SocketStream | None:
    """The running shared bridge's socket, or ``None`` when none answers there."""
    try:
        return await anyio.connect_unix(paths.socket)
    except (FileNotFoundError, ConnectionRefusedError):
        return None


@contextlib.asynccontextmanager
async def locked(paths: SharedPaths) -> AsyncIterator[None]:
    """Hold the bridge's lock file; released when the body ends (or the process dies)."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        # flock blocks; a holder holds it at most START_TIMEOUT, so the thread's wait is bounded.
        await anyio.to_thread.run_sync(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def connect_or_start(
    settings: BridgeSettings, paths: SharedPaths, *, timeout: float = START_TIMEOUT
) -> SocketStream:
    """A connection to the shared bridge of ``paths``, started with ``settings`` if none runs.

    Raises:
        ActorUnavailableError: The bridge did not start (its log's last lines say why) or the lock
            was not free within ``timeout``.
    """
    stream = await connect(paths)
    if stream is not None:
        return stream
    try:
        with anyio.fail_after(timeout):
            async with locked(paths):
                stream = await connect(paths)
                if stream is None:
                    await start_detached(settings, paths)
                    stream = await connect(paths)
    except TimeoutError:
        raise ActorUnavailableError(
            f"the shared bridge did not start within {timeout:g} s; see {paths.log}",
            retryable=True,
            details={"log": str(paths.log)},
        ) from None
    if stream is None:
        raise ActorUnavailableError(f"the shared bridge started but does not answer on {paths.socket}; see {paths.log}")
    return stream


async def start_detached(settings: BridgeSettings, paths: SharedPaths) -> None:
    """Start a shared bridge with ``settings`` and return once it listens. The caller holds the lock."""
    import subprocess  # only here: a relay that attaches to a running bridge never needs it

    ready_read, ready_write = os.pipe()
    try:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(paths.log).st_size > _LOG_LIMIT:
                os.unlink(paths.log)
        log_fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        # The bridge runs on the starter's event loop, asyncio or trio.
        command = [sys.executable, "-m", "bridge", "daemon", "--detach", "--ready-fd", str(ready_write)]
        try:
            await anyio.run_process(
                [*command, "--backend", sniffio.current_async_library()],
                input=msgspec.json.encode(settings),
                stdout=subprocess.DEVNULL,
                stderr=log_fd,
                pass_fds=(ready_write,),
                start_new_session=True,
                cwd="/",
                check=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ActorUnavailableError(
                f"the shared bridge could not be started (exit status {exc.returncode}): {_tail(paths)}"
            ) from None
        finally:
            os.close(log_fd)
        os.close(ready_write)
        ready_write = -1
        await anyio.wait_readable(ready_read)
        if os.read(ready_read, 64) != b"ready\n":
            raise ActorUnavailableError(f"the shared bridge exited while starting: {_tail(paths)}")
    finally:
        os.close(ready_read)
        if ready_write >= 0:
            os.close(ready_write)


def _tail(paths: SharedPaths, limit: int = 2000) -> str:
    try:
        with open(paths.log, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - limit))
            text = log.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return f"no log at {paths.log}"
    return text.splitlines()[-1] if text else f"nothing in {paths.log}"
