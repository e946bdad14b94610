"""Lines in and messages out on raw file descriptors, without threads, so cancellation works.

The SDK's own stdin reader blocks in a worker thread that cancellation cannot
stop, so a server whose stdin stays open cannot be shut down (it waits for
EOF). :class:`StdinLines` reads a descriptor when the event loop says it is
readable instead, and :class:`StdoutWire` writes one when it has room. Both
are free of the mcp SDK: ``serve`` and the shared-mode relay use them alike.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from typing import Final, Self

import anyio
import anyio.lowlevel
import anyio.to_thread

__all__ = ["POSIX", "StdinLines", "StdoutWire"]

_READ_SIZE: Final = 1 << 16
POSIX: Final = sys.platform != "win32"
"""Where stdin and stdout are read and written without threads (``wait_readable`` on pipes)."""


def _pollable(fd: int) -> bool:
    """Pipes, sockets and terminals can be waited on; regular files and ``/dev/null`` never block."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


def _divert(fd: int, flags: int, *, to: int | None = None) -> int:
    """Move ``fd`` to a private close-on-exec duplicate and point ``fd`` at ``to`` (or the null device)."""
    import fcntl  # POSIX only, like the whole thread-free path

    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    if to is not None:
        os.dup2(to, fd)
    else:
        null = os.open(os.devnull, flags)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    return private


def _put_back(private: int, target: int | None) -> None:
    """Undo :func:`_divert`: ``target`` (if any) is the claimed descriptor again, the duplicate closed."""
    if target is None:
        return
    try:
        os.dup2(private, target)
    finally:
        os.close(private)


class StdinLines:
    """Lines of a file descriptor as an async iterator, read without a thread, so cancellation works.

    The descriptor's blocking mode is left alone (a terminal shares it with stdout and stderr): the
    loop waits until it is readable, and a read then returns what is there. Use :meth:`claim` for
    the process's stdin and :meth:`release` to put it back. ``eof`` is set once the other end closed it.
    """

    def __init__(self, fd: int, *, restore: int | None = None) -> None:
        self._fd = fd
        self._restore = restore
        self._buffer = bytearray()
        self._at_eof = False
        self._pollable = _pollable(fd)
        self.eof = anyio.Event()

    @classmethod
    def claim(cls) -> Self:
        """Take fd 0 for the wire; fd 0 reads ``/dev/null`` meanwhile, so nothing else can eat the wire."""
        return cls(_divert(0, os.O_RDONLY), restore=0)

    def release(self) -> None:
        """Put fd 0 back (if claimed)."""
        _put_back(self._fd, self._restore)
        self._restore = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[: newline + 1])
                del self._buffer[: newline + 1]
                return line.decode("utf-8", errors="replace")
            if self._at_eof:
                if self._buffer:
                    rest = bytes(self._buffer)
                    self._buffer.clear()
                    return rest.decode("utf-8", errors="replace")
                self.eof.set()
                raise StopAsyncIteration
            if self._pollable:
                await anyio.wait_readable(self._fd)
            else:
                await anyio.lowlevel.checkpoint()
            chunk = os.read(self._fd, _READ_SIZE)
            if chunk:
                self._buffer += chunk
            else:
                self._at_eof = True


class StdoutWire:
    """The MCP wire out: whole messages written to a private duplicate of fd 1, without a thread.

    While it is claimed, fd 1 points at stderr, so a stray ``print`` cannot corrupt the wire. A
    pipe or socket of its own is made non-blocking and written when the loop says it has room;
    anything else (a terminal or a pipe shared with stderr, whose mode must not change under the
    log writers) is written from a worker thread, as the SDK does.
    """

    def __init__(self, fd: int, *, restore: int | None = None) -> None:
        self._fd = fd
        self._restore = restore
        self._nonblocking = False
        mode = os.fstat(fd)
        if stat.S_ISFIFO(mode.st_mode) or stat.S_ISSOCK(mode.st_mode):
            err = os.fstat(2)
            shared = (err.st_dev, err.st_ino) == (mode.st_dev, mode.st_ino)
            if not shared and os.get_blocking(fd):
                os.set_blocking(fd, False)
                self._nonblocking = True

    @classmethod
    def claim(cls) -> Self:
        """Take fd 1 for the wire; fd 1 writes to stderr meanwhile."""
        return cls(_divert(1, os.O_WRONLY, to=2), restore=1)

    def release(self) -> None:
        """Put fd 1 back as it was."""
        if self._nonblocking:
            with contextlib.suppress(OSError):
                os.set_blocking(self._fd, True)
            self._nonblocking = False
        _put_back(self._fd, self._restore)
        self._restore = None

    async def write(self, text: str | bytes) -> None:
        data = memoryview(text.encode("utf-8") if isinstance(text, str) else text)
        if not self._nonblocking:
            await anyio.to_thread.run_sync(_write_all, self._fd, data)
            return
        while data:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
                continue
            data = data[written:]

    async def flush(self) -> None:
        """Every write goes straight to the descriptor: nothing is buffered."""


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]
