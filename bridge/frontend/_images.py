"""Images a caller passes (a path, an http(s) URL, base64 or a data URI) as ``image_url`` content parts.

The bridge reads and fetches on the caller's behalf, so it does only what the caller could do itself and
no more: paths only under the allowed roots (default: the session's working directory), URLs only to public
addresses unless configured (no SSRF through the bridge: loopback, private, link-local and other special
addresses are refused, redirects are not followed), and every image's size capped before it is read whole.
An image must be one: its bytes are checked against the formats vision models take.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import httpx

from bridge.errors import BadRequestError
from bridge.settings import ImageSettings

__all__ = ["image_parts", "load_image"]

_FORMATS: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
_BASE64: Final = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_DATA_URI: Final = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[\w-]+=[\w.-]+)*;base64,(.*)$", re.S)


def _sniff(data: bytes) -> str | None:
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _FORMATS:
        if data.startswith(magic):
            return mime
    return None


def _as_data_uri(data: bytes, where: str, settings: ImageSettings) -> str:
    if len(data) > settings.max_bytes:
        raise _too_big(where, len(data), settings)
    mime = _sniff(data)
    if mime is None:
        raise BadRequestError(
            f"{where} is not an image the bridge recognises (PNG, JPEG, GIF, WebP or BMP); pass one of those",
            details={"image": where},
        )
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _too_big(where: str, size: int, settings: ImageSettings) -> BadRequestError:
    return BadRequestError(
        f"{where} is {size:,} bytes, more than the {settings.max_bytes:,} an image may be (images.max_bytes); "
        "pass a smaller or scaled-down image",
        details={"image": where, "bytes": size, "max_bytes": settings.max_bytes},
    )


def _decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"{where} is not valid base64", details={"image": where}) from None


async def load_image(spec: str, *, roots: Sequence[Path], settings: ImageSettings) -> str:
    """``spec`` as a ``data:`` URI; ``BadRequestError`` naming what to fix when it cannot be one."""
    spec = spec.strip()
    if not spec:
        raise BadRequestError("an image is empty: pass a file path, an http(s) URL, base64 or a data: URI")
    if spec.startswith("data:"):
        match = _DATA_URI.match(spec)
        if match is None:
            raise BadRequestError("a data: URI image must be base64 (data:image/png;base64,...)")
        if len(match.group(3)) > settings.max_bytes * 4 // 3 + 4:
            raise _too_big("the data: URI image", len(match.group(3)) * 3 // 4, settings)
        return _as_data_uri(_decode(match.group(3), "the data: URI image"), "the data: URI image", settings)
    scheme = urlsplit(spec).scheme.lower()
    if scheme in ("http", "https"):
        return _as_data_uri(await _fetch(spec, settings), _shown(spec), settings)
    if len(spec) > 256 and _BASE64.match(spec):
        if len(spec) > settings.max_bytes * 4 // 3 + 4:
            raise _too_big("the base64 image", len(spec) * 3 // 4, settings)
        return _as_data_uri(_decode(spec, "the base64 image"), "the base64 image", settings)
    return _as_data_uri(await _read(spec, roots, settings), spec, settings)


async def _read(spec: str, roots: Sequence[Path], settings: ImageSettings) -> bytes:
    base = anyio.Path(roots[0]) if roots else await anyio.Path.cwd()
    path = await anyio.Path(spec).expanduser()
    path = path if path.is_absolute() else base / path
    try:
        real = await path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise BadRequestError(
            f"image {spec!r}: no such file (relative paths are taken from {base})", details={"image": spec}
        ) from None
    allowed = [Path(await anyio.Path(root).resolve()) for root in roots]
    if not any(Path(real).is_relative_to(root) for root in allowed):
        raise BadRequestError(
            f"image {spec!r} is outside the directories the bridge reads images from "
            f"({', '.join(str(r) for r in allowed)}); move it there or add its directory to images.allowed_roots",
            details={"image": spec, "allowed_roots": [str(r) for r in allowed]},
        )
    info = await real.stat()
    if not stat.S_ISREG(info.st_mode):
        raise BadRequestError(f"image {spec!r} is not a regular file", details={"image": spec})
    if info.st_size > settings.max_bytes:  # before reading it whole
        raise _too_big(f"image {spec!r}", info.st_size, settings)
    with anyio.fail_after(settings.fetch_timeout):
        async with await anyio.open_file(real, "rb") as handle:
            data: bytes = await handle.read(settings.max_bytes + 1)
    return data


def _shown(url: str) -> str:
    """The URL without its query and credentials, for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


async def _public_address(host: str, port: int, url: str) -> str:
    """The address to fetch ``host`` from: every address it resolves to must be public, and the fetch goes to
    the one checked, so a name that resolves elsewhere a moment later (DNS rebinding) changes nothing."""
    try:
        found = await anyio.getaddrinfo(host, port)
    except OSError as exc:
        raise BadRequestError(f"image URL {url}: cannot resolve {host} ({exc})", details={"image": url}) from None
    addresses = [ipaddress.ip_address(address[0]) for *_, address in found]
    for ip in addresses:
        if not ip.is_global:
            raise BadRequestError(
                f"image URL {url} points at {ip}, a loopback, private, link-local or otherwise non-public "
                "address; the bridge does not fetch those for a caller (set images.allow_private_urls = true to "
                "allow it, or pass the file's path instead)",
                details={"image": url, "address": str(ip)},
            )
    if not addresses:
        raise BadRequestError(f"image URL {url}: {host} resolves to no address", details={"image": url})
    return str(addresses[0])


async def _fetch(url: str, settings: ImageSettings) -> bytes:
    shown = _shown(url)
    parts = urlsplit(url)
    if not parts.hostname:
        raise BadRequestError(f"image URL {shown} has no host", details={"image": shown})
    target = httpx.URL(url)
    headers = {"Accept": "image/*"}
    extensions: dict[str, Any] = {}
    if not settings.allow_private_urls:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await _public_address(parts.hostname, port, shown)
        headers["Host"] = target.netloc.decode("ascii").rpartition("@")[2]
        extensions["sni_hostname"] = parts.hostname  # the certificate is checked against the name, not the address
        target = target.copy_with(host=address)
    try:
        with anyio.fail_after(settings.fetch_timeout):
            async with (
                httpx.AsyncClient(follow_redirects=False, trust_env=False) as client,
                client.stream("GET", target, headers=headers, extensions=extensions) as response,
            ):
                if response.status_code != 200:
                    raise BadRequestError(
                        f"image URL {shown} answered HTTP {response.status_code}"
                        + (
                            " (a redirect: the bridge does not follow them; pass the final URL)"
                            if response.is_redirect
                            else ""
                        ),
                        details={"image": shown, "status": response.status_code},
                    )
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if not kind.startswith("image/"):
                    raise BadRequestError(
                        f"image URL {shown} sent {kind or 'no content type'}, not an image",
                        details={"image": shown, "content_type": kind},
                    )
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > settings.max_bytes:
                    raise _too_big(f"image URL {shown}", int(declared), settings)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > settings.max_bytes:
                        raise _too_big(f"image URL {shown}", len(body), settings)
                return bytes(body)
    except TimeoutError:
        raise BadRequestError(
            f"image URL {shown} did not arrive within {settings.fetch_timeout:g} s (images.fetch_timeout)",
            retryable=True,
            details={"image": shown},
        ) from None
    except httpx.HTTPError as exc:
        raise BadRequestError(
            f"image URL {shown} could not be fetched ({type(exc).__name__})", retryable=True, details={"image": shown}
        ) from None


async def image_parts(images: Sequence[str], *, roots: Sequence[Path], settings: ImageSettings) -> list[dict[str, Any]]:
    """One ``image_url`` part per image, in order."""
    if len(images) > settings.max_images:
        raise BadRequestError(
            f"{len(images)} images is more than one message takes ({settings.max_images}, images.max_images)",
            details={"images": len(images), "max_images": settings.max_images},
        )
    parts: list[dict[str, Any]] = []
    for spec in images:
        uri = await load_image(spec, roots=roots, settings=settings)
        parts.append({"type": "image_url", "image_url": {"url": uri}})
    return parts
