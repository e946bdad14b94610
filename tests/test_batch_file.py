"""Batch results files: in a private per-user state directory, never in a shared or foreign one, and pruned."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.frontend._batch_file import default_batch_dir, write_batch_results
from tests.test_frontend import QWEN, connected, data

ROWS = [{"index": 0, "ok": True, "content": "a"}, {"index": 1, "ok": True, "content": "b"}]
DAY = 24 * 3600.0


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state home of the test's own: nothing here touches the real one."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def listing(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def old_files(directory: Path, ages: list[float]) -> list[Path]:
    """Results files with the given ages in days (distinct, so their order is known)."""
    now = time.time()
    paths = []
    for number, age in enumerate(ages):
        path = directory / f"batch-old-{number:03d}.jsonl"
        path.write_text("{}\n")
        os.utime(path, (now - age * DAY, now - age * DAY))
        paths.append(path)
    return paths


# -- where -------------------------------------------------------------------------------------


def test_the_default_is_the_users_state_directory(tmp_path: Path) -> None:
    assert default_batch_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/lmstudio-bridge/batches")
    assert default_batch_dir({"HOME": "/h"}) == Path("/h/.local/state/lmstudio-bridge/batches")
    assert default_batch_dir({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/state/lmstudio-bridge/batches")


async def test_the_directory_is_created_0700_and_the_file_0600(state: Path) -> None:
    path = await write_batch_results(ROWS, default_batch_dir())
    assert path.parent == state / "lmstudio-bridge" / "batches"
    assert mode(state / "lmstudio-bridge") == 0o700
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    assert rows(path) == ROWS


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["batches", "parent"])
async def test_a_directory_of_ours_open_to_others_is_refused(state: Path, which: str) -> None:
    directory = default_batch_dir()
    directory.parent.mkdir(parents=True, mode=0o700)
    directory.mkdir(mode=0o700)
    target = directory if which == "batches" else directory.parent
    target.chmod(0o777)
    with pytest.raises(ConfigError, match=f"chmod 700 {target}"):
        await write_batch_results(ROWS, directory)
    assert list(directory.iterdir()) == []
    assert mode(target) == 0o777  # refused, not silently repaired


@pytest.mark.parametrize("which", ["batches", "parent"])
async def test_a_symlink_in_place_of_the_directory_is_refused(state: Path, tmp_path: Path, which: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    directory = default_batch_dir()
    if which == "batches":
        directory.parent.mkdir(parents=True, mode=0o700)
        directory.symlink_to(elsewhere)
    else:
        os.mkdir(state)
        directory.parent.symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        await write_batch_results(ROWS, directory)
    assert list(elsewhere.rglob("*.jsonl")) == []


async def test_a_dangling_symlink_is_refused_too(state: Path, tmp_path: Path) -> None:
    directory = default_batch_dir()
    directory.parent.mkdir(parents=True, mode=0o700)
    directory.symlink_to(tmp_path / "missing")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        await write_batch_results(ROWS, directory)
    assert not (tmp_path / "missing").exists()


# -- a directory the user named ----------------------------------------------------------------


async def test_a_named_directory_is_used_as_it_is(tmp_path: Path) -> None:
    named = tmp_path / "results"
    named.mkdir()
    named.chmod(0o755)
    path = await write_batch_results(ROWS, named)
    assert path.parent == named
    assert mode(named) == 0o755  # not chmodded: the user chose it
    assert mode(path) == 0o600


async def test_a_missing_named_directory_is_created_private(tmp_path: Path) -> None:
    named = tmp_path / "new" / "results"
    path = await write_batch_results(ROWS, named)
    assert path.parent == named
    assert mode(named) == 0o700


@pytest.mark.parametrize("bits", [0o777, 0o775, 0o757], ids=oct)
async def test_a_named_directory_others_can_write_to_is_refused(tmp_path: Path, bits: int) -> None:
    named = tmp_path / "results"
    named.mkdir()
    named.chmod(bits)
    with pytest.raises(ConfigError, match="can be written by others"):
        await write_batch_results(ROWS, named)
    assert list(named.iterdir()) == []


async def test_a_named_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        await write_batch_results(ROWS, tmp_path / "link")
    assert list(real.iterdir()) == []


# -- pruning -----------------------------------------------------------------------------------


async def test_only_the_newest_files_are_kept(tmp_path: Path) -> None:
    old = old_files(tmp_path, [0.1, 0.2, 0.3, 0.4, 0.5])
    new = await write_batch_results(ROWS, tmp_path, max_files=3)
    assert listing(tmp_path) == sorted([new, old[0], old[1]])


async def test_files_older_than_the_age_limit_are_removed(tmp_path: Path) -> None:
    old = old_files(tmp_path, [1, 6.9, 7.1, 30])
    others = [tmp_path / "notes.txt", tmp_path / "batch-x.json"]
    for path in others:
        path.write_text("mine")
        os.utime(path, (0, 0))
    new = await write_batch_results(ROWS, tmp_path)
    assert listing(tmp_path) == sorted([new, old[0], old[1], *others])


async def test_pruning_never_follows_a_link(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    precious = tmp_path / "precious.jsonl"
    precious.write_text("keep")
    os.utime(precious, (0, 0))
    (results / "batch-link.jsonl").symlink_to(precious)
    await write_batch_results(ROWS, results, max_files=1)
    assert precious.read_text() == "keep"


# -- through batch_chat ------------------------------------------------------------------------


async def test_a_big_batch_chat_keeps_its_results_in_the_state_directory(state: Path) -> None:
    async with connected(output_limit=2000) as (client, _):
        result = await client.call_tool("batch_chat", {"prompts": [f"p{i}" for i in range(40)], "models": [QWEN]})
    batch = data(result)
    path = Path(batch["results_file"])
    assert path.parent == state / "lmstudio-bridge" / "batches"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [row["index"] for row in rows(path)] == list(range(40))
