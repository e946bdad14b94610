"""The TOML the README and docs/configuration.md show is a configuration the bridge accepts as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.config import CliFlags, load_settings
from bridge.settings import BridgeSettings

ROOT = Path(__file__).parent.parent
BLOCKS = [
    (path, index, block)
    for path in (ROOT / "README.md", ROOT / "docs" / "configuration.md", ROOT / "docs" / "jobs.md")
    for index, block in enumerate(re.findall(r"```toml\n(.*?)```", path.read_text(encoding="utf-8"), re.S))
]


@pytest.mark.parametrize(("path", "index", "block"), BLOCKS, ids=[f"{p.name}-{i}" for p, i, _ in BLOCKS])
def test_a_documented_toml_block_loads(tmp_path: Path, path: Path, index: int, block: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(block, encoding="utf-8")
    settings = load_settings(CliFlags(config=str(config)), environ={"HOME": str(tmp_path)})
    assert settings.servers, f"{path.name} block {index}"


def test_the_configuration_doc_sets_every_jobs_key() -> None:
    block = next(b for p, _, b in BLOCKS if p.name == "configuration.md")
    for key in ("on_budget", "time_budget", "ttl", "max_kept", "max_bytes", "max_active"):
        assert re.search(rf"^{key} = ", block, re.M), key


def test_the_configuration_doc_sets_every_top_level_key() -> None:
    """Every top-level setting has a line (or, for a table, a section) in docs/configuration.md."""
    block = next(b for p, _, b in BLOCKS if p.name == "configuration.md")
    for key in BridgeSettings.__struct_fields__:
        assert re.search(rf"^#? ?{key} = |^\[\[?{key}", block, re.M), key


def test_the_readme_is_a_five_minute_read_with_the_quick_start_first() -> None:
    """Under 15 KB; the first section is the Quick start, and it has exactly two command lines."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", readme, re.M)
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (commands,) = re.findall(r"```bash\n(.*?)```", quick_start, re.S)
    assert len(readme.encode()) < 15_000
    assert sections[0] == "Quick start"
    assert len(commands.strip().splitlines()) == 2
