"""Third-party plugins: built and installed as real distributions, then discovered,
listed, selected with --plugins, and a broken one reported without stopping the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.processes import KubecoreProcess, run_kubecore

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
version = "{version}"
dependencies = ["kubecore"]

[project.entry-points."kubecore.plugins"]
{name} = "{module}"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""

DEMO = '''\
"""A demo plugin: a config section and one component that writes a marker file."""
import structlog
import trio
from pydantic import Field

from kubecore import hookimpl
from kubecore.config import ConfigSection, SectionModel
from kubecore.context import Component


class DemoConfig(SectionModel):
    greeting: str = Field(default="hi")


@hookimpl
def kubecore_config_section():
    return ConfigSection("demo", DemoConfig, "a demo")


@hookimpl
def kubecore_components(ctx):
    greeting = ctx.config(DemoConfig).greeting
    marker = ctx.data_dir / "demo-marker"

    async def run(*, task_status=trio.TASK_STATUS_IGNORED):
        marker.write_text(greeting)
        structlog.get_logger("demo").info("demo running", greeting=greeting)
        task_status.started()
        await trio.sleep_forever()

    return [Component("demo", run)]
'''

BROKEN = 'raise ImportError("this plugin needs libfoo, which is not installed")\n'

BADHOOK = '''\
from kubecore import hookimpl


@hookimpl
def kubecore_no_such_hook():
    return 1
'''

DISTS = {
    "demo": ("kubecore-demo", "1.2.3", "kc_demo", DEMO),
    "broken": ("kubecore-broken", "0.1", "kc_broken", BROKEN),
    "badhook": ("kubecore-badhook", "0.2", "kc_badhook", BADHOOK),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the three distributions are pip-installed into (as wheels)."""
    root = tmp_path_factory.mktemp("third-party")
    target = root / "site"
    sources = []
    for name, (dist, version, module, code) in DISTS.items():
        src = root / dist
        (src / module).mkdir(parents=True)
        (src / module / "__init__.py").write_text(code)
        (src / "pyproject.toml").write_text(
            PYPROJECT.format(dist=dist, version=version, name=name, module=module)
        )
        sources.append(str(src))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(target),
         *sources],
        check=True,
        capture_output=True,
    )
    return target


def env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site)}


def test_listed_with_distribution_version_hooks_and_errors(site: Path) -> None:
    result = run_kubecore(["plugins", "--json"], env=env(site))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    demo = rows["demo"]
    assert (demo["distribution"], demo["version"], demo["error"]) == ("kubecore-demo", "1.2.3",
                                                                      None)
    assert demo["hooks"] == ["kubecore_components", "kubecore_config_section"]
    assert rows["broken"]["error"] == (
        "failed to load: ImportError: this plugin needs libfoo, which is not installed"
    )
    assert rows["badhook"]["error"] == "implements unknown hook(s): kubecore_no_such_hook"
    assert rows["apiserver"]["builtin"] is True
    assert rows["apiserver"]["error"] is None


def test_table_lists_them_too(site: Path) -> None:
    result = run_kubecore(["plugins"], env=env(site))
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["demo", "kubecore-demo", "1.2.3", "ok", "components,", "config_section"] in rows
    assert ["broken", "kubecore-broken", "0.1", "error"] in rows
    assert "broken: failed to load: ImportError: this plugin needs libfoo" in result.stdout


def test_selected_with_plugins_flag(site: Path, tmp_path: Path) -> None:
    args = ["run", "--role", "node", "--plugins", "demo", "--data-dir", str(tmp_path),
            "--log-format", "json", "--set", "demo.greeting=hello"]
    with KubecoreProcess(args, env=env(site)) as proc:
        proc.wait_event("demo running", greeting="hello")
        assert (tmp_path / "demo-marker").read_text() == "hello"
        assert proc.stop() == 0
    assert "Traceback" not in proc.output


def test_selected_broken_plugin_is_a_one_line_error(site: Path, tmp_path: Path) -> None:
    result = run_kubecore(
        ["run", "--plugins", "demo,broken", "--data-dir", str(tmp_path)], env=env(site)
    )
    assert result.returncode == 1
    assert result.stderr == (
        "error: plugin 'broken' cannot be used: failed to load: ImportError: this plugin"
        " needs libfoo, which is not installed\n"
    )


def test_a_broken_default_plugin_does_not_stop_the_others(site: Path) -> None:
    # A fresh interpreter, so no discovery cache of this process plays a part.
    script = textwrap.dedent("""\
        import json
        from kubecore import plugins
        plugins.DEFAULT_PLUGINS = ("broken", "demo", "badhook")
        loaded = plugins.load(None)
        print(json.dumps({"names": loaded.names,
                          "failed": {i.name: i.error for i in loaded.failed},
                          "registered": [n for n, _ in loaded.manager.list_name_plugin()]}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, **env(site)}, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "demo" in report["names"]
    assert set(report["failed"]) == {"broken", "badhook"}
    assert "demo" in report["registered"]
    assert "badhook" not in report["registered"]


def test_config_section_of_an_unselected_plugin_is_ignored(site: Path, tmp_path: Path) -> None:
    config = tmp_path / "kubecore.toml"
    config.write_text(textwrap.dedent("""\
        [demo]
        greeting = "unused"
    """))
    result = run_kubecore(["config", "--config", str(config), "--plugins", ""], env=env(site))
    assert result.returncode == 0, result.stderr
    assert "unused" not in result.stdout


def readme_block(marker: str) -> str:
    """The fenced code block of README.md whose first line is ``marker``."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for block in readme.split("```")[1::2]:
        body = block.split("\n", 1)[1]
        if body.startswith(marker):
            return body
    raise AssertionError(f"README.md has no code block starting with {marker!r}")


def test_the_readme_plugin_guide_works(tmp_path: Path) -> None:
    src = tmp_path / "kubecore-hello"
    (src / "kubecore_hello").mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        + readme_block("# pyproject.toml")
    )
    (src / "kubecore_hello" / "__init__.py").write_text(
        readme_block("# kubecore_hello/__init__.py")
    )
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(target),
         str(src)],
        check=True,
        capture_output=True,
    )
    listed = run_kubecore(["plugins", "--json"], env=env(target))
    row = {r["name"]: r for r in json.loads(listed.stdout)}["hello"]
    assert (row["distribution"], row["error"]) == ("kubecore-hello", None)
    args = ["run", "--role", "node", "--plugins", "hello", "--hostname-override", "node-a",
            "--data-dir", str(tmp_path / "data"), "--log-format", "json",
            "--set", "hello.interval=0.05"]
    with KubecoreProcess(args, env=env(target)) as proc:
        first = proc.wait_event("hello", node="node-a")
        later = proc.wait_for(lambda e: e.get("event") == "hello" and e is not first)
        assert later["node"] == "node-a"
        assert proc.stop() == 0
