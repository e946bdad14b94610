"""The compat profile (issue 23): the older LM Studio bridge's remaining tools, each a thin alias, through real
stdio against the simulator (the vision ones on its vision model); the default profile stays lean; the older
bridge's environment variables are honoured."""

from __future__ import annotations

import base64
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client, ClientSession, StdioServerParameters, stdio_client

from bridge.app import open_bridge
from bridge.config import load_config
from bridge.frontend._compat import _schema_report
from bridge.settings import BridgeSettings, ServerSettings
from bridge.sim import SimConfig, SimModel, SimServer
from bridge.sim.testing import SimProcess
from tests._stdio import call, clean_env, data, serve_argv, sim_fixture, sim_stats, stdio_session, text
from tests._util import mcp_server

VL = "qwen/qwen2.5-vl-7b"
QWEN = "qwen/qwen3-coder-30b"
GEMMA = "google/gemma-3-12b"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
SIM_CONFIG = {
    "models": [
        {"id": QWEN, "loaded": True, "reply_tokens": 6},
        {"id": GEMMA, "loaded": False, "reply_tokens": 6},
        {"id": VL, "loaded": True, "vision": True, "reply_tokens": 6},
    ],
    "auto_evict": False,
}
VISION_TOOLS = [
    "vision_analyze",
    "analyze_image",
    "describe_image",
    "compare_images",
    "extract_text_from_image",
    "identify_objects",
    "answer_about_image",
]
MODEL_TOOLS = [
    "lms_list_loaded_models",
    "lms_list_downloaded_models",
    "lms_load_model",
    "lms_unload_model",
    "lms_ensure_model_loaded",
    "lms_server_status",
    "lms_resolve_model",
    "lms_search_models",
    "lms_download_model",
]
RUN_TOOLS = [
    "autonomous_filesystem_full",
    "autonomous_memory_full",
    "autonomous_fetch_full",
    "autonomous_github_full",
    "autonomous_persistent_session",
]
COMPAT_TOOLS = {*VISION_TOOLS, *MODEL_TOOLS, *RUN_TOOLS, "validate_json_schema"}


sim = sim_fixture(SIM_CONFIG)


@asynccontextmanager
async def serving(
    tmp_path: Path,
    errlog: TextIO,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
) -> AsyncIterator[ClientSession]:
    """``serve`` in ``cwd`` (default ``tmp_path``), with ``home`` (default ``tmp_path``) as its home."""
    params = StdioServerParameters(
        command=sys.executable,
        args=serve_argv(*args),
        env={**clean_env(home or tmp_path), **(env or {})},
        cwd=str(cwd or tmp_path),
    )
    async with stdio_session(params, errlog, read_timeout_seconds=90) as session:
        yield session


async def tool_names(session: ClientSession) -> set[str]:
    return {t.name for t in (await session.list_tools()).tools}


# --------------------------------------------------------------------------- profiles


async def test_the_default_profile_has_no_compat_tools_and_compat_adds_every_one(
    sim: SimProcess, tmp_path: Path, errlog: TextIO
) -> None:
    async with serving(tmp_path, errlog, "--base-url", sim.url, "--no-child-servers") as session:
        default = await tool_names(session)
    async with serving(tmp_path, errlog, "--base-url", sim.url, "--no-child-servers", "--tools", "compat") as session:
        compat = await tool_names(session)
    assert not default & COMPAT_TOOLS
    assert compat == default | COMPAT_TOOLS


@pytest.mark.parametrize("profile", ["default", "compat"])
async def test_every_description_and_the_instructions_fit_claude_codes_limits(
    sim: SimProcess, tmp_path: Path, errlog: TextIO, profile: str
) -> None:
    """Claude Code cuts each description and the server instructions at 2 KB and reads the first words when
    it loads tools lazily: each stays under 2 KB, its first sentence says what the tool does, and none carries
    source indentation."""
    args = ["--base-url", sim.url, "--no-child-servers", "--tools", profile]
    params = StdioServerParameters(command=sys.executable, args=serve_argv(*args), env=clean_env(tmp_path))
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        tools = (await session.list_tools()).tools
    assert init.instructions is not None
    assert len(init.instructions.encode()) < 2048
    assert len(init.instructions.splitlines()) <= 10
    for tool in tools:
        description = tool.description or ""
        assert 0 < len(description.encode()) < 2048, tool.name
        assert "\n " not in description, tool.name
        first_sentence = description.split(". ")[0]
        assert 20 <= len(first_sentence) <= 300, (tool.name, first_sentence)


# --------------------------------------------------------------------------- vision


async def test_every_vision_tool_is_a_chat_with_images_on_the_vision_model(
    sim: SimProcess, tmp_path: Path, errlog: TextIO
) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.png").write_bytes(PNG)
    calls: dict[str, dict[str, Any]] = {
        "vision_analyze": {"task": "What is shown?", "images": "a.png"},
        "analyze_image": {"image": "a.png"},
        "describe_image": {"image": "a.png", "style": "brief"},
        "compare_images": {"images": ["a.png", "b.png"], "comparison_type": "both"},
        "extract_text_from_image": {"image": "a.png"},
        "identify_objects": {"image": "a.png", "detail": "low"},
        "answer_about_image": {"image": "a.png", "question": "Which colour is it?"},
    }
    args = ["--base-url", sim.url, "--no-child-servers", "--tools", "compat"]
    async with serving(tmp_path, errlog, *args) as session:
        results = {name: await call(session, name, {**arguments, "model": VL}) for name, arguments in calls.items()}
        too_few = await call(session, "compare_images", {"images": ["a.png"], "model": VL})
        blind = await call(session, "analyze_image", {"image": "a.png", "model": QWEN})
        stats = await sim_stats(sim)
    for name, result in results.items():
        assert not result.is_error, f"{name}: {text(result)}"
        assert data(result)["model"] == VL
    assert stats["models"][VL]["images"] == 8  # compare_images sent two
    assert stats["models"][VL]["requests"] == 7
    assert too_few.is_error
    assert blind.is_error
    assert data(blind)["code"] == "unsupported"


# --------------------------------------------------------------------------- schemas


async def test_validate_json_schema_reports_errors_and_warnings(
    sim: SimProcess, tmp_path: Path, errlog: TextIO
) -> None:
    good = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    broken = {"type": "objekt", "properties": {"tags": {"type": "array"}}, "required": "name"}
    args = ["--base-url", sim.url, "--no-child-servers", "--tools", "compat"]
    async with serving(tmp_path, errlog, *args) as session:
        valid = await call(session, "validate_json_schema", {"schema": good})
        invalid = await call(session, "validate_json_schema", {"schema": broken})
    assert data(valid) == {"valid": True, "errors": [], "warnings": []}
    assert not invalid.is_error  # a report about the schema, not a failure of the call
    report = data(invalid)
    assert report["valid"] is False
    assert any(e.startswith("type:") for e in report["errors"])
    assert any(e.startswith("required:") for e in report["errors"])
    assert report["warnings"] == ["(root)/properties/tags: an array without items lets the model put anything in it"]
    assert text(invalid).startswith("invalid: ")


# --------------------------------------------------------------------------- model management


async def test_the_lms_tools_manage_models_through_lm_studios_api(
    sim: SimProcess, tmp_path: Path, errlog: TextIO
) -> None:
    args = ["--base-url", sim.url, "--no-child-servers", "--tools", "compat"]
    async with serving(tmp_path, errlog, *args) as session:
        loaded = await call(session, "lms_list_loaded_models", {})
        downloaded = await call(session, "lms_list_downloaded_models", {})
        ensured_first = await call(session, "lms_ensure_model_loaded", {"model_name": GEMMA})
        ensured_again = await call(session, "lms_ensure_model_loaded", {"model_name": GEMMA})
        unloaded = await call(session, "lms_unload_model", {"model_name": GEMMA})
        temporary = await call(session, "lms_load_model", {"model_name": GEMMA, "keep_loaded": False})
        status = await call(session, "lms_server_status", {})
        resolved = await call(session, "lms_resolve_model", {"model_key": QWEN.upper()})
        fallback = await call(session, "lms_resolve_model", {"model_key": "no/such-model", "auto_fallback": True})
        missing = await call(session, "lms_resolve_model", {"model_key": "no/such-model"})
        search = await call(session, "lms_search_models", {"query": "qwen"})
        already = await call(session, "lms_download_model", {"model_key": QWEN})
        fetched = await call(session, "lms_download_model", {"model_key": "new/model-7b", "wait": True})
        listed_after = await call(session, "lms_list_downloaded_models", {})
        stats = await sim_stats(sim)
    ok = [loaded, downloaded, ensured_first, ensured_again, unloaded, temporary, status, resolved, fallback]
    for result in [*ok, already, fetched, listed_after]:
        assert not result.is_error, text(result)
    assert {m["id"] for m in data(loaded)["models"]} == {QWEN, VL}
    assert {m["id"] for m in data(downloaded)["models"]} == {QWEN, GEMMA, VL}
    assert data(ensured_first)["was_already_loaded"] is False
    assert data(ensured_again)["was_already_loaded"] is True
    assert stats["models"][GEMMA]["loads"] == 2
    assert stats["models"][GEMMA]["unloads"] == 1
    assert data(status)["healthy"] is True
    assert data(resolved)["id"] == QWEN
    assert data(fallback)["requested_model"] == "no/such-model"
    assert missing.is_error
    assert data(missing)["code"] == "model_not_found"
    assert search.is_error
    assert data(search)["code"] == "unsupported"
    assert data(already)["status"] == "already_downloaded"
    assert data(fetched)["status"] == "completed"
    assert "new/model-7b" in {m["id"] for m in data(listed_after)["models"]}


# --------------------------------------------------------------------------- environment


def test_the_older_bridges_environment_variables() -> None:
    old = load_config(environ={"DEFAULT_MODEL": "old/model", "LMSTUDIO_HOST": "gpu-box", "LMSTUDIO_PORT": "4321"})
    both = load_config(environ={"DEFAULT_MODEL": "old/model", "LMSTUDIO_BRIDGE_DEFAULT_MODEL": "new/model"})
    profile = load_config(environ={"LMSTUDIO_BRIDGE_TOOLS": "compat"})
    assert old.settings.default_model == "old/model"
    assert old.origin("default_model") == "env DEFAULT_MODEL"
    assert [s.url for s in old.settings.servers] == ["http://gpu-box:4321"]
    assert both.settings.default_model == "new/model"
    assert profile.settings.tools == "compat"
    assert profile.origin("tools") == "env LMSTUDIO_BRIDGE_TOOLS"


async def test_the_compat_profile_from_the_environment_over_stdio(
    sim: SimProcess, tmp_path: Path, errlog: TextIO
) -> None:
    env = {"LMSTUDIO_BRIDGE_TOOLS": "compat", "DEFAULT_MODEL": VL}
    async with serving(tmp_path, errlog, "--base-url", sim.url, "--no-child-servers", env=env) as session:
        names = await tool_names(session)
        current = await call(session, "get_current_model", {})
    assert names >= COMPAT_TOOLS
    assert data(current)["id"] == VL


def test_old_variables_that_mean_less_here_are_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="bridge.config"):
        load_config(environ={"WORKING_DIR": "/srv", "LMS_MAX_RETRIES": "5"})
        lean = [r.getMessage() for r in caplog.records]
        caplog.clear()
        load_config(environ={"WORKING_DIR": "/srv", "LMSTUDIO_BRIDGE_TOOLS": "compat"})
        compat = [r.getMessage() for r in caplog.records]
        caplog.clear()
        load_config(environ={"DEFAULT_MODEL": "a/b", "LMSTUDIO_BRIDGE_DEFAULT_MODEL": "c/d"})
        both = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("WORKING_DIR is set") and "--tools compat" in m for m in lean)
    assert any(m.startswith("LMS_MAX_RETRIES is set but not read") for m in lean)
    assert compat == []
    assert both == ["DEFAULT_MODEL=a/b is not used: LMSTUDIO_BRIDGE_DEFAULT_MODEL=c/d is set too"]


async def test_the_warnings_go_to_stderr_and_stdout_stays_json_rpc(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "WORKING_DIR": str(tmp_path)}
    done = await anyio.run_process(
        [sys.executable, "-m", "bridge", "serve", "--no-child-servers"], input=b"", env=env, check=False
    )
    assert b"WORKING_DIR is set" in done.stderr
    assert done.stdout == b""


async def test_a_server_without_lm_studios_api_answers_the_lms_tools_unsupported() -> None:
    """llama.cpp's server, vLLM, Ollama: no model downloads or loads through an API the bridge knows."""
    model = SimModel(id="plain/model", loaded=True)
    async with SimServer(SimConfig(models=(model,), api="openai")) as sim:
        settings = BridgeSettings(servers=[ServerSettings(url=sim.url, name="plain")], tools="compat")
        async with (
            open_bridge(settings, child_servers=False) as bridge,
            Client(mcp_server(bridge), mode="legacy") as client,
        ):
            download = await client.call_tool("lms_download_model", {"model_key": "x/y"})
            load = await client.call_tool("lms_load_model", {"model_name": model.id})
            listed = await client.call_tool("lms_list_downloaded_models", {})
    assert download.is_error
    assert load.is_error
    assert download.structured_content is not None
    assert load.structured_content is not None
    assert download.structured_content["code"] == "unsupported"
    assert load.structured_content["code"] == "unsupported"
    assert not listed.is_error


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
SCHEMA_KEYS = st.sampled_from(["type", "properties", "items", "required", "anyOf", "enum", "minItems", "$ref"])


@given(schema=st.dictionaries(SCHEMA_KEYS | st.text(max_size=6), JSON, max_size=5))
def test_validate_json_schema_answers_any_object_with_a_report(schema: dict[str, Any]) -> None:
    """Whatever object it is given, the report says valid or not, and an invalid one has its errors."""
    report = _schema_report(schema).structured
    assert isinstance(report["valid"], bool)
    assert report["valid"] == (report["errors"] == [])
    assert len(report["errors"]) == len(set(report["errors"]))
