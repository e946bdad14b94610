"""Hot reload: the polling watcher and the diff between configurations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from bridge.children import (
    ChildrenConfig,
    ConfigDiff,
    ConfigSource,
    ConfigUpdate,
    ConfigWatcher,
    ServerConfig,
    diff_configs,
)

# Only a safety net against a hang; no test asserts how long anything took.
DEADLINE = 10


def write(path: Path, servers: dict[str, Any]) -> None:
    path.write_text(json.dumps({"mcpServers": servers}))


def stdio(name: str, command: str = "srv", **fields: Any) -> ServerConfig:
    return ServerConfig(name=name, transport="stdio", command=command, **fields)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "high.json", tmp_path / "low.json"


@pytest.fixture
def watcher(files: tuple[Path, Path]) -> ConfigWatcher:
    high, low = files
    write(low, {"a": {"command": "a1"}, "b": {"command": "b1"}})
    sources = [ConfigSource(path=high, origin="explicit"), ConfigSource(path=low, origin="user")]
    return ConfigWatcher(sources, environ={}, interval=0.01)


async def next_update(watcher: ConfigWatcher) -> ConfigUpdate:
    with anyio.fail_after(DEADLINE):
        return await anext(watcher)


# -- diff_configs -------------------------------------------------------------------------------


def test_diff_sorts_names_into_four_groups() -> None:
    """Added, removed, changed and unchanged servers are told apart."""
    old = ChildrenConfig(servers={"keep": stdio("keep"), "edit": stdio("edit"), "gone": stdio("gone")})
    new = ChildrenConfig(servers={"keep": stdio("keep"), "edit": stdio("edit", args=("--v2",)), "new": stdio("new")})
    assert diff_configs(old, new) == ConfigDiff(
        added=("new",), removed=("gone",), changed=("edit",), unchanged=("keep",)
    )


def test_diff_from_nothing() -> None:
    """The first configuration adds everything."""
    assert diff_configs(None, ChildrenConfig(servers={"a": stdio("a")})) == ConfigDiff(added=("a",))


def test_diff_ignores_the_source_file() -> None:
    """Moving an unchanged definition to another file restarts nothing."""
    old = ChildrenConfig(servers={"a": stdio("a", source="/one.json")})
    new = ChildrenConfig(servers={"a": stdio("a", source="/two.json")})
    assert diff_configs(old, new) == ConfigDiff(unchanged=("a",))
    assert diff_configs(old, new).empty


@pytest.mark.parametrize(
    "change",
    [{"disabled": True}, {"env": {"K": "v"}}, {"timeout": 5.0}, {"cwd": "/x"}, {"eager": True}, {"command": "other"}],
)
def test_any_launch_field_counts_as_changed(change: dict[str, Any]) -> None:
    """Every field but `source` takes part in the comparison."""
    old = ChildrenConfig(servers={"a": stdio("a")})
    new = ChildrenConfig(servers={"a": stdio("a", **change)})
    assert diff_configs(old, new).changed == ("a",)


def test_interval_must_be_positive(files: tuple[Path, Path]) -> None:
    """A zero interval would spin the event loop."""
    with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
        ConfigWatcher([ConfigSource(path=files[0], origin="x")], interval=0)


# -- the watcher --------------------------------------------------------------------------------


async def test_initial_configuration(watcher: ConfigWatcher, files: tuple[Path, Path]) -> None:
    """The first load is available at once, before any poll."""
    assert {name: s.command for name, s in watcher.current.servers.items()} == {"a": "a1", "b": "b1"}
    assert watcher.current.sources == (files[1],)


async def test_add_remove_change(watcher: ConfigWatcher, files: tuple[Path, Path]) -> None:
    """An edit yields the new configuration with the right diff."""
    _, low = files
    write(low, {"a": {"command": "a2"}, "c": {"command": "c1"}})
    update = await next_update(watcher)
    assert update.diff == ConfigDiff(added=("c",), removed=("b",), changed=("a",))
    assert update.config.servers["a"].command == "a2"
    assert watcher.current == update.config


async def test_file_that_appears_and_disappears(watcher: ConfigWatcher, files: tuple[Path, Path]) -> None:
    """A new higher-precedence file overrides; deleting it brings the lower definition back."""
    high, _ = files
    write(high, {"a": {"command": "override"}})
    appeared = await next_update(watcher)
    assert appeared.diff == ConfigDiff(changed=("a",), unchanged=("b",))
    assert appeared.config.servers["a"].source == str(high)
    high.unlink()
    disappeared = await next_update(watcher)
    assert disappeared.diff == ConfigDiff(changed=("a",), unchanged=("b",))
    assert disappeared.config.servers["a"].command == "a1"


async def test_same_size_rewrite_is_seen(watcher: ConfigWatcher, files: tuple[Path, Path]) -> None:
    """The content hash catches an edit that keeps the size (and possibly the mtime)."""
    _, low = files
    write(low, {"a": {"command": "a9"}, "b": {"command": "b1"}})
    assert (await next_update(watcher)).diff.changed == ("a",)


async def test_unparseable_file_keeps_last_good(watcher: ConfigWatcher, files: tuple[Path, Path]) -> None:
    """A broken edit keeps the running servers and reports the error; fixing it clears the error."""
    _, low = files
    before = watcher.current.servers
    low.write_text('{"mcpServers": {"a": {"command": "a1"},')
    broken = await next_update(watcher)
    assert broken.diff == ConfigDiff(unchanged=("a", "b"))
    assert broken.config.servers == before
    assert broken.config.errors[0].startswith(f"{low}: not valid JSON")
    assert broken.config.errors[1] == f"{low}: keeping its last good configuration until the file is fixed"
    write(low, {"a": {"command": "a1"}})
    fixed = await next_update(watcher)
    assert fixed.diff == ConfigDiff(removed=("b",), unchanged=("a",))
    assert fixed.config.errors == ()


async def test_bad_server_keeps_its_last_good_definition(watcher: ConfigWatcher, files: tuple[Path, Path]) -> None:
    """A type error in one server keeps that server's last good definition and applies the rest."""
    _, low = files
    write(low, {"a": {"command": "a1", "args": "oops"}, "b": {"command": "b2"}})
    update = await next_update(watcher)
    assert update.diff == ConfigDiff(changed=("b",), unchanged=("a",))
    assert update.config.servers["a"].args == ()
    assert f"{low}: server 'a': key 'args' must be a list of strings, not a string" in update.config.errors


async def test_touch_without_change_yields_nothing(watcher: ConfigWatcher, files: tuple[Path, Path]) -> None:
    """Rewriting identical content is re-read but produces no update; the next real change does."""
    _, low = files
    content = low.read_bytes()
    low.write_bytes(content)
    await anyio.sleep(0.05)
    write(low, {"a": {"command": "a1"}})
    assert (await next_update(watcher)).diff == ConfigDiff(removed=("b",), unchanged=("a",))


async def test_cancelling_a_wait_leaves_the_watcher_usable(watcher: ConfigWatcher, files: tuple[Path, Path]) -> None:
    """The watcher is a plain object, not a generator: a cancelled wait can be resumed."""
    with anyio.move_on_after(0.05) as scope:
        await anext(watcher)
    assert scope.cancelled_caught
    write(files[1], {})
    assert (await next_update(watcher)).diff == ConfigDiff(removed=("a", "b"))
