"""Every plugin distribution in plugins/ is installed, discovered and usable."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from kubecore.plugins import BUILTIN_PLUGINS, DEFAULT_PLUGINS
from tests.processes import run_kubecore

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_PROJECTS = sorted(ROOT.glob("plugins/*/pyproject.toml"))


def declared() -> dict[str, str]:
    """Entry-point name -> distribution name, for every package under plugins/."""
    found: dict[str, str] = {}
    for path in PLUGIN_PROJECTS:
        project = tomllib.loads(path.read_text())["project"]
        for name in project["entry-points"]["kubecore.plugins"]:
            found[name] = project["name"]
    return found


@pytest.fixture(scope="module")
def listed() -> dict[str, dict[str, object]]:
    result = run_kubecore(["plugins", "--json"])
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_every_plugin_distribution_is_listed_without_error(
    listed: dict[str, dict[str, object]],
) -> None:
    for name, dist in declared().items():
        assert name in listed, f"{dist} is not installed"
        row = listed[name]
        assert row["distribution"] == dist
        assert row["error"] is None, row["error"]
        assert row["hooks"], f"{name} implements no hook"


def test_builtin_plugins_are_listed(listed: dict[str, dict[str, object]]) -> None:
    for name in BUILTIN_PLUGINS:
        assert listed[name]["builtin"] is True
        assert listed[name]["error"] is None


def test_default_plugins_that_exist_are_dependencies_of_kubecore() -> None:
    """Installing kubecore brings the default plugins shipped in this repository."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {req.split(">")[0].split("=")[0].split("[")[0].strip() for req in requires}
    for plugin, dist in declared().items():
        if plugin in DEFAULT_PLUGINS:
            assert dist in names, f"default plugin {plugin} ({dist}) is not a dependency"
