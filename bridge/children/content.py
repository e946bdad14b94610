"""A child's tool result as the bridge passes it on: text for the model, every content item kept."""

from __future__ import annotations

from mcp import types as mcp_types

from bridge.messages import ChildToolResult

__all__ = ["tool_result"]


def tool_result(server: str, tool: str, result: mcp_types.CallToolResult, *, duration: float) -> ChildToolResult:
    """Turn the SDK's ``CallToolResult`` into a :class:`ChildToolResult`.

    ``text`` joins the text of every content item; other items are described in
    place (``[image: image/png, 12,345 bytes]``), and all of them are kept, as
    plain dicts, in ``content``.
    """
    parts = [_describe(item) for item in result.content]
    return ChildToolResult(
        server=server,
        tool=tool,
        is_error=bool(result.is_error),
        text="\n".join(part for part in parts if part),
        content=[item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.content],
        structured_content=result.structured_content,
        duration_s=duration,
    )


def _describe(item: mcp_types.ContentBlock) -> str:
    match item:
        case mcp_types.TextContent():
            return item.text
        case mcp_types.ImageContent():
            return f"[image: {item.mime_type}, {_decoded_size(item.data):,} bytes]"
        case mcp_types.AudioContent():
            return f"[audio: {item.mime_type}, {_decoded_size(item.data):,} bytes]"
        case mcp_types.ResourceLink():
            kind = f", {item.mime_type}" if item.mime_type else ""
            return f"[resource link: {item.name} <{item.uri}>{kind}]"
        case mcp_types.EmbeddedResource():
            resource = item.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                return f"[resource: {resource.uri}]\n{resource.text}"
            kind = resource.mime_type or "binary"
            return f"[resource: {resource.uri}, {kind}, {_decoded_size(resource.blob):,} bytes]"
    return f"[{getattr(item, 'type', 'unknown')} content]"


def _decoded_size(data: str) -> int:
    """Bytes of base64 ``data`` once decoded, without decoding it."""
    body = "".join(data.split())
    return max(len(body) * 3 // 4 - (len(body) - len(body.rstrip("="))), 0)
