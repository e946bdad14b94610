"""What users write for an LLM server (a URL, an API key), checked and normalised once.

Kept out of :mod:`bridge.llm` and free of httpx so that reading the settings
(which the shared-mode relay does on every start) stays cheap to import.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from bridge.errors import ConfigError

__all__ = ["check_api_key", "has_credentials", "normalize_base_url", "public_url", "redact_url"]

_ENDPOINTS = ("/chat/completions", "/completions", "/embeddings", "/responses", "/models")


def redact_url(text: str) -> str:
    """``text`` with the credentials of a URL in it (``user:pass@``) replaced by ``***@``, for messages and logs.

    Works on what the user wrote, valid or not: everything after the scheme up to the
    last ``@`` goes (a password may hold ``/``, ``?`` or ``#`` unescaped), so a path that
    holds an ``@`` loses more than it must, never less.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if "@" not in rest:
        return text
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def public_url(url: str) -> str:
    """``url`` to show: no credentials, and no query or fragment (where tokens travel), only that there was one."""
    shown = redact_url(url)
    base, sep, _ = shown.partition("?")
    base, hash_sep, _ = base.partition("#")
    return base + ("?…" if sep else "#…" if hash_sep else "")


def has_credentials(base_url: str) -> bool:
    """Whether the URL carries ``user:pass@`` (its server then names its own credentials)."""
    text = base_url.strip()
    try:
        return "@" in urlsplit(text if "://" in text else f"http://{text}").netloc
    except ValueError:
        return False  # not a URL at all: normalize_base_url says why


def normalize_base_url(base_url: str, *, keep_credentials: bool = False) -> str:
    """The server root without a trailing slash or ``/v1``.

    LM Studio's OpenAI-compatible API lives under ``/v1`` and its native API under
    ``/api`` at the root, so the client keeps the root and adds either prefix:
    ``localhost:1234``, ``http://localhost:1234/``, ``http://localhost:1234/v1``
    and ``http://localhost:1234/v1/chat/completions`` all give
    ``http://localhost:1234``. Paths in front of ``/v1`` (reverse proxies) are kept.

    Credentials in the URL (``http://user:pass@host``) are dropped: the result is the
    form to show, log and name the server by. ``keep_credentials``: kept as written
    (still percent-encoded), for the client, which sends them as Basic auth.
    Error messages never show them.

    Raises:
        ConfigError: The URL is empty, not http(s), has no host, or has an ``@`` past its host (an
            unescaped password).
    """
    text = base_url.strip()
    if not text:
        raise ConfigError("The LLM server's base URL is empty; set it to e.g. http://localhost:1234.")
    if "://" not in text:
        text = f"http://{text}"
    try:
        url = urlsplit(text)
        _ = url.port  # an out-of-range or non-numeric port raises here
    except ValueError as exc:
        why = "" if "@" in text else f" ({exc})"  # urllib's reason may quote a piece of a password
        raise ConfigError(f"The LLM server's base URL {redact_url(base_url)!r} is not a valid URL{why}.") from None
    scheme = url.scheme.lower()
    if scheme not in ("http", "https") or not url.hostname or any(c.isspace() for c in url.netloc):
        raise ConfigError(
            f"The LLM server's base URL {redact_url(base_url)!r} must be http:// or https:// with a host, "
            "e.g. http://localhost:1234 (LM Studio) or http://localhost:11434 (Ollama)."
        )
    if "@" in text.partition("://")[2].partition(url.netloc)[2]:
        # A '/', '?' or '#' in a password ends the host part early: the rest of the password would be a path.
        raise ConfigError(
            f"The LLM server's base URL {redact_url(base_url)!r} has an '@' after its host; if it holds a user and "
            "password, percent-encode the password's special characters ('/' as %2F, '@' as %40, '#' as %23, "
            "'?' as %3F, ':' as %3A)."
        )
    path = url.path.rstrip("/")
    for endpoint in _ENDPOINTS:
        if path.endswith(f"/v1{endpoint}"):
            path = path.removesuffix(endpoint)
            break
    path = path.removesuffix("/v1").rstrip("/")
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    port = f":{url.port}" if url.port is not None else ""
    userinfo, at, _ = url.netloc.rpartition("@")
    credentials = f"{userinfo}{at}" if keep_credentials else ""
    return f"{scheme}://{credentials}{host}{port}{path}"


def check_api_key(api_key: str) -> None:
    """Refuse a key that cannot be one header value: a CR or LF in it would start a header of its own.

    Raises:
        ConfigError: The key holds a control character or a character outside ASCII.
    """
    bad = [c for c in api_key if not (" " <= c <= "~")]
    if bad:
        raise ConfigError(
            f"The API key holds {len(bad)} character(s) that cannot go into an HTTP header "
            f"(first: {bad[0]!r}); a stray line break from a file or a paste is the usual cause. "
            "Set LMSTUDIO_API_KEY (or api_key) to the key alone.",
            details={"bad_characters": len(bad)},
        )
