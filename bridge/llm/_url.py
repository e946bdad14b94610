"""Base URL normalization: users write the server's root or its ``/v1`` URL, and both must work.

LM Studio's OpenAI-compatible API lives under ``/v1`` and its native API under
``/api`` at the root, so the client keeps the root and adds either prefix.
"""

from __future__ import annotations

import httpx

from bridge.errors import ConfigError

__all__ = ["normalize_base_url"]

_ENDPOINTS = ("/chat/completions", "/completions", "/embeddings", "/responses", "/models")


def normalize_base_url(base_url: str) -> str:
    """The server root without a trailing slash or ``/v1``.

    ``localhost:1234``, ``http://localhost:1234/``, ``http://localhost:1234/v1``
    and ``http://localhost:1234/v1/chat/completions`` all give
    ``http://localhost:1234``. Paths in front of ``/v1`` (reverse proxies) are kept.

    Raises:
        ConfigError: The URL is empty, not http(s), or has no host.
    """
    text = base_url.strip()
    if not text:
        raise ConfigError("The LLM server's base URL is empty; set it to e.g. http://localhost:1234.")
    if "://" not in text:
        text = f"http://{text}"
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"The LLM server's base URL {base_url!r} is not a valid URL ({exc}).") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"The LLM server's base URL {base_url!r} must be http:// or https:// with a host, "
            "e.g. http://localhost:1234 (LM Studio) or http://localhost:11434 (Ollama)."
        )
    path = url.path.rstrip("/")
    for endpoint in _ENDPOINTS:
        if path.endswith(f"/v1{endpoint}"):
            path = path.removesuffix(endpoint)
            break
    path = path.removesuffix("/v1").rstrip("/")
    netloc = url.netloc.decode("ascii")
    return f"{url.scheme}://{netloc}{path}"
