"""The obvious alternative, for comparison: an MCP server that calls the LLM server with blocking HTTP.

This is what many existing LM Studio bridges do: an ``async def`` tool that
makes a plain blocking ``httpx.Client`` (``requests``-style) call, so the event
loop stands still for the whole LLM call and the server answers one call at a
time, whatever the client sends. The stress suite runs the same workload
through it and through ``lmstudio-bridge serve`` and reports the ratio.

Run: ``python -m benchmarks.baseline_sequential --base-url http://127.0.0.1:1234`` (MCP over stdio).
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio
import httpx
from mcp.server.mcpserver import MCPServer


def build(base_url: str) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("sequential-baseline", log_level="WARNING")
    client = httpx.Client(base_url=base_url.rstrip("/"), trust_env=False, timeout=120)

    @server.tool()
    async def chat_completion(prompt: str, model: str | None = None) -> str:
        """Ask a local model one question (blocking HTTP, one call at a time)."""
        body = {"model": model or "default", "messages": [{"role": "user", "content": prompt}]}
        response = client.post("/v1/chat/completions", json=body)  # noqa: ASYNC212 - blocking: the point
        response.raise_for_status()
        content: str = response.json()["choices"][0]["message"]["content"] or ""
        return content

    del chat_completion
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline_sequential")
    parser.add_argument("--base-url", required=True)
    args = parser.parse_args(argv)
    anyio.run(build(args.base_url).run_stdio_async)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
