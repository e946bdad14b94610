"""The ``compat`` profile: the older LM Studio bridge's remaining tools, by its names and parameter names.

Each is a thin alias over what the bridge does already: a vision tool is a chat with images, the ``lms_*``
tools are the registry's model listing, loading and downloading through LM Studio's native API (no ``lms``
subprocesses), ``validate_json_schema`` is jsonschema's own meta-schema check. The autonomous ones are in
``_compat_runs``. Where an old default was harmful the description says what replaced it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import jsonschema
from pydantic import Field

from bridge.errors import ModelNotFoundError, UnsupportedEndpointError
from bridge.frontend._args import DESTRUCTIVE, READ_ONLY, STATEFUL, MaxTokens, token_count
from bridge.frontend._format import (
    ToolOutput,
    current_model_output,
    download_output,
    health_output,
    loaded_output,
    models_output,
    unloaded_output,
)
from bridge.frontend._frontend import Ctx, Frontend
from bridge.frontend._jobs import run_as_job
from bridge.frontend._mcp_server import ToolSet
from bridge.llm import ChatMessage
from bridge.messages import (
    Chat,
    CheckHealth,
    DownloadModel,
    ListModels,
    LoadModel,
    ResolveModel,
    UnloadModel,
)

__all__ = ["register_compat_tools"]

OLD_TEMPERATURE: Final = 0.7
"""The older bridge's fixed temperature for its vision tools."""
TEMPORARY_TTL: Final = 300
"""``lms_load_model(keep_loaded=False)``: unloaded after this many idle seconds, as the older bridge did."""

Image = Annotated[
    str, Field(description="A file path (under the working directory), an http(s) URL, base64 or a data: URI.")
]
DetailLevel = Literal["auto", "low", "high"]
Detail = Annotated[DetailLevel, Field(description="Image detail for the model: auto, low or high.")]
ModelName = Annotated[str, Field(description="The model's id (list_models).", min_length=1)]
VisionModel = Annotated[str | None, Field(description="A vision model's id (list_models); omit for the default.")]

_ANALYZE = (
    "Analyze this image in detail: the objects and people in it, any text, the colours, the composition, "
    "and anything notable."
)
_STYLES: Final = {
    "detailed": "Describe this image thoroughly: what is in it, where, and what is happening.",
    "brief": "Describe this image in one or two sentences.",
    "creative": "Describe this image vividly, as a storyteller would.",
    "technical": "Describe this image technically: composition, lighting, colours, quality and any visible text.",
}
_COMPARISONS: Final = {
    "differences": "Compare these images and list how they differ.",
    "similarities": "Compare these images and list what they have in common.",
    "both": "Compare these images: list what they have in common, then how they differ.",
}

_FIXED_PROMPT_TOOLS: Final[tuple[tuple[str, str, DetailLevel, str], ...]] = (
    (
        "extract_text_from_image",
        "Transcribe all the text in this image exactly, keeping its line breaks and layout.",
        "high",
        "Read the text in an image (OCR by a vision model), keeping its layout where it can.",
    ),
    (
        "identify_objects",
        "List every object you can identify in this image, one per line, with where it is in the image.",
        "auto",
        "List the objects in an image, each with where it is (a vision model's answer, as a list).",
    ),
)
"""Image tools that are a prompt and nothing else: name, prompt, default detail, description."""


def register_compat_tools(tools: ToolSet, frontend: Frontend) -> None:
    """Add the older bridge's vision, model-management and schema tools to ``tools``."""
    _register_vision(tools, frontend)
    _register_models(tools, frontend)

    @tools.tool(annotations=READ_ONLY)
    async def validate_json_schema(
        ctx: Ctx, schema: Annotated[dict[str, Any], Field(description="The JSON schema to check.")]
    ) -> ToolOutput:
        """Check a JSON schema before using it as response_format: errors break it, warnings weaken it."""
        return _schema_report(schema)

    del validate_json_schema


# --------------------------------------------------------------------------- vision


def _register_vision(tools: ToolSet, frontend: Frontend) -> None:
    async def see(
        ctx: Ctx,
        tool: str,
        prompt: str,
        images: list[str],
        detail: str,
        model: str | None,
        max_tokens: int | str | None = None,
    ) -> ToolOutput:
        parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}, *await frontend.image_parts(images)]
        if detail != "auto":
            for part in parts[1:]:
                part["image_url"]["detail"] = detail
        tokens = token_count(max_tokens)
        message = Chat(
            model=model,
            messages=[ChatMessage(role="user", content=parts)],
            temperature=OLD_TEMPERATURE,
            max_tokens=tokens,
        )
        return await run_as_job(frontend, ctx, tool=tool, work=message, model=model, total=tokens)

    @tools.tool(annotations=READ_ONLY)
    async def vision_analyze(
        ctx: Ctx,
        task: Annotated[str, Field(description="What to do with the images.", min_length=1)],
        images: Annotated[str | list[str], Field(description="One image or several (paths, URLs, base64).")],
        model: VisionModel = None,
        max_tokens: MaxTokens = "auto",
        detail: Detail = "auto",
    ) -> ToolOutput:
        """Give a vision model a task about one or more images (older-bridge name; chat_completion with images)."""
        return await see(
            ctx, "vision_analyze", task, [images] if isinstance(images, str) else images, detail, model, max_tokens
        )

    @tools.tool(annotations=READ_ONLY)
    async def analyze_image(
        ctx: Ctx, image: Image, prompt: str = _ANALYZE, detail: Detail = "auto", model: VisionModel = None
    ) -> ToolOutput:
        """Analyze an image with a vision model (older-bridge name; chat_completion with images)."""
        return await see(ctx, "analyze_image", prompt, [image], detail, model)

    @tools.tool(annotations=READ_ONLY)
    async def describe_image(
        ctx: Ctx,
        image: Image,
        style: Annotated[str, Field(description="detailed, brief, creative or technical.")] = "detailed",
        detail: Detail = "auto",
        model: VisionModel = None,
    ) -> ToolOutput:
        """Describe an image in a style: detailed, brief, creative or technical (an unknown one is detailed)."""
        return await see(ctx, "describe_image", _STYLES.get(style, _STYLES["detailed"]), [image], detail, model)

    @tools.tool(annotations=READ_ONLY)
    async def compare_images(
        ctx: Ctx,
        images: Annotated[list[str], Field(description="Two or more images.", min_length=2)],
        comparison_type: Annotated[
            Literal["differences", "similarities", "both"], Field(description="differences, similarities or both.")
        ] = "differences",
        detail: Detail = "auto",
        model: VisionModel = None,
    ) -> ToolOutput:
        """Compare two or more images with a vision model: their differences, similarities or both."""
        return await see(ctx, "compare_images", _COMPARISONS[comparison_type], images, detail, model)

    def fixed_prompt(name: str, prompt: str, default_detail: DetailLevel, doc: str) -> None:
        """An image tool whose only instruction is its own prompt."""

        async def tool(
            ctx: Ctx, image: Image, detail: Detail = default_detail, model: VisionModel = None
        ) -> ToolOutput:
            return await see(ctx, name, prompt, [image], detail, model)

        tool.__name__ = tool.__qualname__ = name
        tool.__doc__ = doc
        tools.tool(annotations=READ_ONLY)(tool)

    for name, prompt, default_detail, doc in _FIXED_PROMPT_TOOLS:
        fixed_prompt(name, prompt, default_detail, doc)

    @tools.tool(annotations=READ_ONLY)
    async def answer_about_image(
        ctx: Ctx,
        image: Image,
        question: Annotated[str, Field(description="The question about the image.", min_length=1)],
        detail: Detail = "auto",
        model: VisionModel = None,
    ) -> ToolOutput:
        """Answer a question about an image with a vision model."""
        return await see(ctx, "answer_about_image", question, [image], detail, model)

    del vision_analyze, analyze_image, describe_image, compare_images, answer_about_image


# --------------------------------------------------------------------------- models


def _register_models(tools: ToolSet, frontend: Frontend) -> None:
    registry = frontend.registry
    limit = frontend.limit

    @tools.tool(annotations=READ_ONLY)
    async def lms_list_loaded_models(ctx: Ctx) -> ToolOutput:
        """The models loaded in memory now (older-bridge name; list_models(loaded_only=true))."""
        return models_output(await frontend.ask(ctx, await registry(), ListModels(loaded_only=True)), limit)

    @tools.tool(annotations=READ_ONLY)
    async def lms_list_downloaded_models(ctx: Ctx) -> ToolOutput:
        """The LLMs downloaded on the servers, loaded or not (older-bridge name; list_models(model_type="llm"))."""
        return models_output(await frontend.ask(ctx, await registry(), ListModels(model_type="llm")), limit)

    @tools.tool(annotations=STATEFUL)
    async def lms_load_model(ctx: Ctx, model_name: ModelName, keep_loaded: bool = True) -> ToolOutput:
        """Load a model (LM Studio's native API). keep_loaded=false unloads it after 5 idle minutes; true keeps
        it loaded (the older bridge gave it 10 minutes)."""
        message = LoadModel(model=model_name, ttl=None if keep_loaded else TEMPORARY_TTL)
        return loaded_output(await frontend.ask(ctx, await registry(), message, model=model_name))

    @tools.tool(annotations=DESTRUCTIVE)
    async def lms_unload_model(ctx: Ctx, model_name: ModelName) -> ToolOutput:
        """Unload a model from memory (older-bridge name; unload_model)."""
        message = UnloadModel(model=model_name)
        return unloaded_output(await frontend.ask(ctx, await registry(), message, model=model_name))

    @tools.tool(annotations=STATEFUL)
    async def lms_ensure_model_loaded(ctx: Ctx, model_name: ModelName) -> ToolOutput:
        """Load a model unless it is loaded already; says which it was."""
        ref = await registry()
        entry = await frontend.ask(ctx, ref, ResolveModel(model=model_name))
        if entry.loaded:
            text = f"{entry.id} is loaded already"
            return ToolOutput(text=text, structured={"model": entry.id, "was_already_loaded": True})
        loaded = loaded_output(await frontend.ask(ctx, ref, LoadModel(model=entry.id), model=entry.id))
        return ToolOutput(text=loaded.text, structured={**loaded.structured, "was_already_loaded": False})

    @tools.tool(annotations=READ_ONLY)
    async def lms_server_status(ctx: Ctx) -> ToolOutput:
        """Whether each LLM server runs and answers now (older-bridge name; health_check)."""
        return health_output(await frontend.ask(ctx, await registry(), CheckHealth()), limit)

    @tools.tool(annotations=READ_ONLY)
    async def lms_resolve_model(
        ctx: Ctx,
        model_key: ModelName,
        auto_fallback: Annotated[bool, Field(description="If it is not there, the default model instead.")] = False,
        task_type: Annotated[str | None, Field(description="Accepted and not used (the older bridge's hint).")] = None,
    ) -> ToolOutput:
        """The model a call naming model_key would use (ids match exactly, then case-insensitively); with
        auto_fallback, the default model when there is none such."""
        del task_type
        ref = await registry()
        try:
            entry = await frontend.ask(ctx, ref, ResolveModel(model=model_key))
        except ModelNotFoundError:
            if not auto_fallback:
                raise
            entry = await frontend.ask(ctx, ref, ResolveModel())
            fallback = current_model_output(entry, limit)
            text = f"{model_key} is not here; the default model instead:\n{fallback.text}"
            return ToolOutput(text=text, structured={**fallback.structured, "requested_model": model_key})
        return current_model_output(entry, limit)

    @tools.tool(annotations=READ_ONLY)
    async def lms_search_models(ctx: Ctx, query: str, limit: int = 10) -> ToolOutput:
        """Search LM Studio's model catalog: not possible through its API (this answers `unsupported`)."""
        del ctx, limit
        raise UnsupportedEndpointError(
            f"LM Studio's API has no model search, so {query!r} cannot be searched from here (the older bridge's "
            "tool said the same). Browse https://lmstudio.ai/models, then lms_download_model with the model's "
            "catalog id or Hugging Face URL",
            details={"query": query},
        )

    @tools.tool(annotations=STATEFUL)
    async def lms_download_model(
        ctx: Ctx,
        model_key: Annotated[str, Field(description="A catalog id or a Hugging Face URL.", min_length=1)],
        wait: Annotated[bool, Field(description="Wait for the download (within the call's budget).")] = False,
        quantization: Annotated[str | None, Field(description="e.g. Q4_K_M; omit for LM Studio's pick.")] = None,
    ) -> ToolOutput:
        """Download a model on the LM Studio server (its native API); says how far the download is."""
        message = DownloadModel(model=model_key, quantization=quantization, wait=wait)
        return download_output(await frontend.ask(ctx, await registry(), message, model=model_key))

    del lms_list_loaded_models, lms_list_downloaded_models, lms_load_model, lms_unload_model
    del lms_ensure_model_loaded, lms_server_status, lms_resolve_model, lms_search_models, lms_download_model


# --------------------------------------------------------------------------- schemas


def _schema_report(schema: dict[str, Any]) -> ToolOutput:
    """jsonschema's meta-schema check (errors), and what weakens a schema as structured output (warnings)."""
    meta = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    found = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(meta(meta.META_SCHEMA).iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path])
    ]
    errors = list(dict.fromkeys(found))  # the meta-schema's vocabularies say some twice
    warnings: list[str] = []
    if "type" not in schema and not any(k in schema for k in ("$ref", "anyOf", "oneOf", "allOf", "enum", "const")):
        warnings.append("(root): no type; structured output wants one (usually object)")
    _weak_spots(schema, "(root)", warnings)
    valid = not errors
    lines = ["valid" if valid else f"invalid: {len(errors)} error(s)", *errors, *(f"warning: {w}" for w in warnings)]
    return ToolOutput(text="\n".join(lines), structured={"valid": valid, "errors": errors, "warnings": warnings})


def _weak_spots(schema: object, where: str, warnings: list[str]) -> None:
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "object" and "properties" not in schema:
        warnings.append(f"{where}: an object without properties lets the model answer anything")
    if schema.get("type") == "array" and "items" not in schema:
        warnings.append(f"{where}: an array without items lets the model put anything in it")
    for name, sub in (schema.get("properties") or {}).items() if isinstance(schema.get("properties"), dict) else ():
        _weak_spots(sub, f"{where}/properties/{name}", warnings)
    if isinstance(schema.get("items"), dict):
        _weak_spots(schema["items"], f"{where}/items", warnings)
