"""Logs on stderr only (stdout is the MCP wire): plain lines or JSON lines, level from the settings."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Final, TextIO

__all__ = ["JsonFormatter", "configure_logging"]

PLAIN_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_HANDLER_MARK: Final = "_lmstudio_bridge_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and ``exc`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", fmt: str = "plain", *, stream: TextIO | None = None) -> None:
    """Send every log record to stderr (or ``stream``) at ``level``, as ``plain`` lines or ``json`` lines.

    Replaces the handler a previous call installed; leaves other handlers alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The SDK logs every request at INFO; keep it one level quieter than ours unless debugging.
    if root.level > logging.DEBUG:
        for name in ("mcp", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
