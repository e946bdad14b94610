"""A real llama-cpp-python server for the tests: built, started and stopped by a fixture.

Loaded as a pytest plugin by ``tests/conftest.py``, next to ``tests/peers.py``, whose cache,
lock, process and :class:`~tests.peers.LlamaServer` helpers it uses. The fixture is synchronous
and session-scoped, so one server serves the asyncio and the trio run of a test alike.

``llama_cpp_python_server``
    A :class:`~tests.peers.LlamaServer` for ``llama_cpp.server`` (PyPI
    ``llama-cpp-python[server]``, pinned to :data:`LLAMA_CPP_PYTHON_VERSION`) in a child process
    on an ephemeral loopback port, serving SmolLM2 under two aliases from one config file:
    :data:`FUNCTION_CALLING_ALIAS` (chat format ``chatml-function-calling``; the server's
    ``model``, loaded first) and :data:`CHATML_ALIAS` (``chatml``), each with ``n_ctx=512``
    and embeddings off. Otherwise llama-cpp-python's own defaults: one request at a time for
    all models, and ``interrupt_requests=true`` (a request waiting for its turn cuts a running
    stream). :func:`served` reads what it answered from its log.

PyPI has no wheel with a compiled llama.cpp, so pip builds it from source (about 5 minutes on
2 cores) into a private venv, ``<cache>/llama-cpp-python-<version>/venv``, once: under a file
lock, published by a "done" marker written atomically (a venv without it is half-built and is
built again). ``CMAKE_ARGS=-DGGML_NATIVE=OFF``: a native build on a CPU that reports AMX
segfaults on the first token.

The child is :data:`_LAUNCHER`, run by the private venv's python. It builds the app as
``python -m llama_cpp.server --config_file`` does, binds port 0 itself (the server's own entry
point takes a fixed port only: a find-a-port-then-bind race) and logs one line per request.
Like ``tests/_peer_procs/llama_server.py`` it exits when its stdin reaches EOF.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import LlamaServer, PeerSetupError, _file_lock, _run, _serving, _session_peer, cache_dir

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "FUNCTION_CALLING_ALIAS",
    "CHATML_ALIAS",
    "Served",
    "ensure_llama_cpp_python_venv",
    "served",
    # fixtures
    "llama_cpp_python_server",
]

# Pinned exactly: the venv is named after it and built once.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
LLAMA_CPP_PYTHON_REQUIREMENT = f"llama-cpp-python[server]=={LLAMA_CPP_PYTHON_VERSION}"

FUNCTION_CALLING_ALIAS = "smol-a"  # chat_format "chatml-function-calling"
CHATML_ALIAS = "smol-b"  # chat_format "chatml"
N_CTX = 512  # per model: small, so a prompt over the context is easy to write

BUILD_TIMEOUT = 1800.0  # seconds: pip compiles llama.cpp (about 5 minutes on 2 cores, more when busy)


def ensure_llama_cpp_python_venv(cache: Path | None = None) -> Path:
    """Return the python of a private venv with ``llama-cpp-python[server]``, building it once.

    The venv is built in place (a venv is not relocatable) and counts as built only once
    ``<cache>/llama-cpp-python-<version>/.done`` holds the requirement; the marker is written
    (temp file, then rename) after the build and an import check succeeded. Writers hold a file
    lock, so parallel pytest workers build it once. Raises :class:`PeerSetupError` with pip's
    output tail if the build fails.
    """
    root = (cache or cache_dir()) / f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}"
    venv, marker = root / "venv", root / ".done"
    python = venv / "bin" / "python"

    def built() -> bool:
        return marker.is_file() and marker.read_text() == LLAMA_CPP_PYTHON_REQUIREMENT and python.is_file()

    if built():
        return python
    with _file_lock(root.parent / f".llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}.lock"):
        if built():  # another process finished while we waited for the lock
            return python
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(venv, ignore_errors=True)  # what a build that was cut off left
        _run([sys.executable, "-m", "venv", str(venv)], what="creating the llama-cpp-python venv", timeout=300)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(CMAKE_ARGS="-DGGML_NATIVE=OFF", CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
        _run(
            [str(python), "-m", "pip", "install", "--no-cache-dir", LLAMA_CPP_PYTHON_REQUIREMENT],
            what=f"building {LLAMA_CPP_PYTHON_REQUIREMENT} (compiles llama.cpp: needs cmake and a C++ compiler)",
            timeout=BUILD_TIMEOUT,
            env=env,
        )
        check = "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)"
        version = _run([str(python), "-c", check], what="importing the built llama_cpp", timeout=120, env=env)
        if version.strip() != LLAMA_CPP_PYTHON_VERSION:
            raise PeerSetupError(f"{venv} has llama_cpp {version.strip()!r}, not {LLAMA_CPP_PYTHON_VERSION}")
        with tempfile.NamedTemporaryFile("w", dir=root, prefix=".done-", delete=False) as tmp:
            tmp.write(LLAMA_CPP_PYTHON_REQUIREMENT)
        os.replace(tmp.name, marker)
    return python


# ``python -c _LAUNCHER CONFIG READY``: the app of ``python -m llama_cpp.server --config_file
# CONFIG`` (same settings classes, same create_app, same uvicorn) on a socket bound to port 0,
# wrapped to print ``served {json}`` when a request is over (its response about to be sent whole, a
# stream's ``[DONE]`` about to be sent, or the app done with it): method, path, status, and how many
# requests were open when it arrived (itself included; the peak of those is the peak overlap). So a
# request the client has a whole answer to is in the log: a client stops reading a stream at
# ``[DONE]``, before the body's last (empty) message.
_LAUNCHER = r"""
import json, os, socket, sys, threading
from pathlib import Path

import uvicorn
from llama_cpp.server.app import create_app
from llama_cpp.server.settings import ConfigFileSettings, ServerSettings

threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()  # EOF: pytest is gone
config = ConfigFileSettings.model_validate_json(Path(sys.argv[1]).read_bytes())
app = create_app(server_settings=ServerSettings.model_validate(config), model_settings=config.models)
open_now = set()  # requests whose response is not sent whole yet


async def logged(scope, receive, send):
    if scope["type"] != "http":
        return await app(scope, receive, send)
    key = object()
    open_now.add(key)
    line = {"method": scope["method"], "path": scope["path"], "status": None, "open": len(open_now)}

    def over():
        if key in open_now:
            open_now.discard(key)
            print("served", json.dumps(line), flush=True)

    async def send_seen(message):
        if message["type"] == "http.response.start":
            line["status"] = message["status"]
        elif not message.get("more_body") or b"data: [DONE]" in message.get("body", b""):
            over()  # before the client can have the whole answer (a stream's is whole at [DONE])
        await send(message)

    try:
        await app(scope, receive, send_seen)
    finally:
        over()


sock = socket.create_server((config.host, 0))
ready = Path(sys.argv[2])
ready.with_suffix(".tmp").write_text(json.dumps({"base_url": "http://%s:%d" % sock.getsockname()[:2]}))
os.replace(ready.with_suffix(".tmp"), ready)
uvicorn.Server(uvicorn.Config(logged, log_level="warning")).run(sockets=[sock])
"""


@dataclass(frozen=True)
class Served:
    """One request the server has answered, from its log line."""

    method: str
    path: str
    status: int | None  # None: it ended before a response started
    open: int  # requests open at the server when it arrived, itself included


def served(server: LlamaServer) -> list[Served]:
    """Every request the llama-cpp-python ``server`` has finished so far, in the order they ended."""
    lines = server.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [Served(**json.loads(line.removeprefix("served "))) for line in lines if line.startswith("served {")]


@pytest.fixture(scope="session")
def llama_cpp_python_server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's server with SmolLM2 as ``smol-a`` (chatml-function-calling) and ``smol-b``
    (chatml), n_ctx 512 each, no embeddings, for the whole session. Built on first use (minutes)."""
    python = ensure_llama_cpp_python_venv()
    workdir = tmp_path_factory.mktemp("llama-cpp-python")
    config = workdir / "llama-cpp-python.json"
    common = {"model": str(smollm2_gguf), "n_ctx": N_CTX, "n_threads": 1, "n_threads_batch": 1, "verbose": False}
    models = [
        {**common, "model_alias": FUNCTION_CALLING_ALIAS, "chat_format": "chatml-function-calling"},
        {**common, "model_alias": CHATML_ALIAS, "chat_format": "chatml"},
    ]
    config.write_text(json.dumps({"host": "127.0.0.1", "models": models}, indent=2), encoding="utf-8")
    ready, log_path = workdir / "ready.json", workdir / "llama-cpp-python.log"
    argv = [str(python), "-c", _LAUNCHER, str(config), str(ready)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    aliases = [FUNCTION_CALLING_ALIAS, CHATML_ALIAS]
    serving = _serving(argv, ready, log_path, what="llama-cpp-python", aliases=aliases, probe="/v1/models", env=env)
    with serving as (pid, base_url), _session_peer(pid):
        yield LlamaServer(
            base_url=base_url,
            model=FUNCTION_CALLING_ALIAS,
            pid=pid,
            n_ctx=N_CTX,
            n_parallel=1,
            embeddings=False,
            chat_template=None,
            log_path=log_path,
        )
