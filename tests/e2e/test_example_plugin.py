"""examples/plugins/kubecore-spread as a third party would use it: pip-installed into
a separate directory, listed by ``kubecore plugins``, its section in ``kubecore config
--reference``, selected with ``--plugins`` on a real master where it changes where the
scheduler places pods; and the example's own tests pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import KubecoreProcess, run_kubecore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "kubecore-spread"
TIMEOUT = 20.0
"""Seconds any single wait on the master may take."""
HELD = 6
"""Pods bound to node-a before the scheduler places any."""
NEW = 5
"""Pods then created one after another for the scheduler to place (fewer than HELD, so
node-a keeps more pods than node-b throughout)."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the example distribution is pip-installed into (built as a wheel)."""
    target = tmp_path_factory.mktemp("spread") / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(target),
         str(EXAMPLE)],
        check=True,
        capture_output=True,
    )
    return target


def env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site)}


def test_installed_from_a_wheel_not_the_source_tree(site: Path) -> None:
    assert (site / "kubecore_spread" / "__init__.py").is_file()
    assert (site / "kubecore_spread" / "py.typed").is_file()
    assert not (site / "tests").exists()


def test_listed_with_distribution_version_and_hooks(site: Path) -> None:
    result = run_kubecore(["plugins", "--json"], env=env(site))
    assert result.returncode == 0, result.stderr
    row = {r["name"]: r for r in json.loads(result.stdout)}["spread"]
    assert (row["distribution"], row["version"], row["error"]) == ("kubecore-spread",
                                                                   "0.1.0", None)
    assert row["hooks"] == ["kubecore_config_section", "kubecore_scheduler_priorities"]
    assert row["builtin"] is False


def test_config_reference_shows_the_spread_section(site: Path) -> None:
    result = run_kubecore(["config", "--reference"], env=env(site))
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("## [spread]\n", 1)[1].split("\n## [", 1)[0]
    assert "(from `spread`)" in section
    assert "| `weight` | `int` | `10` |" in section


def test_config_takes_and_checks_the_weight(site: Path, tmp_path: Path) -> None:
    base = ["config", "--plugins", "spread", "--data-dir", str(tmp_path)]
    ok = run_kubecore([*base, "--set", "spread.weight=3"], env=env(site))
    assert ok.returncode == 0, ok.stderr
    assert "[spread]\nweight = 3\n" in ok.stdout
    bad = run_kubecore([*base, "--set", "spread.weight=-1"], env=env(site))
    assert bad.returncode != 0
    assert "weight" in bad.stderr


class Api:
    """Plain JSON calls on the master's apiserver (v1beta1, namespace default)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=f"{url}/api/v1beta1", timeout=TIMEOUT)

    def post(self, resource: str, body: dict[str, object]) -> None:
        response = self.http.post(resource, json=body)
        assert response.status_code in (200, 201, 202), response.text

    def minion(self, name: str) -> None:
        self.post("minions", {"kind": "Minion", "apiVersion": "v1beta1", "id": name})

    def pod(self, name: str) -> None:
        """A one-container pod with no resource requests and no host ports."""
        self.post("pods", {
            "kind": "Pod", "apiVersion": "v1beta1", "id": name,
            "desiredState": {"manifest": {
                "version": "v1beta1", "id": name,
                "containers": [{"name": "c", "image": "busybox"}],
            }},
        })

    def bind(self, name: str, host: str) -> None:
        self.post("bindings", {"kind": "Binding", "apiVersion": "v1beta1",
                               "podID": name, "host": host})

    def host(self, name: str) -> str:
        response = self.http.get(f"pods/{name}")
        assert response.status_code == 200, response.text
        host: str = response.json()["desiredState"].get("host", "")
        return host

    def wait_host(self, name: str) -> str:
        """The host pod ``name`` gets, waiting at most :data:`TIMEOUT`."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if host := self.host(name):
                return host
            time.sleep(0.05)
        raise AssertionError(f"pod {name} was not scheduled within {TIMEOUT}s")


@pytest.fixture
def master(site: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[
        tuple[KubecoreProcess, Api]]:
    """A master run with ``request.param`` as its plugins: its process and its API."""
    args = ["run", "--role", "master", "--plugins", request.param,
            "--set", "apiserver.port=0", "--data-dir", str(tmp_path / "data"),
            "--log-format", "json",
            # Minions noticed and no-fit pods retried within a tenth of a second; a
            # seeded RNG makes the LeastRequested ties of the run without spread repeat.
            "--set", "scheduler.minion_poll_interval=0.1",
            "--set", "scheduler.backoff_initial=0.1", "--set", "scheduler.backoff_max=0.2",
            "--set", "scheduler.seed=1"]
    with KubecoreProcess(args, env=env(site)) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        assert url.startswith("http://127.0.0.1:")
        proc.wait_event("kubecore is up")
        api = Api(url)
        try:
            yield proc, api
        finally:
            api.http.close()
        assert proc.stop() == 0, proc.output
    assert "Traceback" not in proc.output


def place(api: Api) -> list[str]:
    """Bind :data:`HELD` pods to node-a, register node-a and node-b, then create
    :data:`NEW` unscheduled pods one after another; the hosts the scheduler gives them."""
    # The held pods are created while no minion exists, so the scheduler cannot place
    # them before they are bound (a binding does not need the minion).
    for i in range(HELD):
        api.pod(f"held-{i}")
        api.bind(f"held-{i}", "node-a")
    api.minion("node-a")
    api.minion("node-b")
    # The scheduler's watch of assigned pods is pushed; let it take in the bindings.
    time.sleep(0.5)
    hosts = []
    for i in range(NEW):
        api.pod(f"new-{i}")
        hosts.append(api.wait_host(f"new-{i}"))
    assert all(api.host(f"held-{i}") == "node-a" for i in range(HELD))
    return hosts


@pytest.mark.parametrize("master", ["store_sqlite,scheduler_priority,spread"],
                         indirect=True)
def test_spread_places_every_new_pod_on_the_emptier_minion(
    master: tuple[KubecoreProcess, Api],
) -> None:
    proc, api = master
    started = proc.wait_event("scheduler starting")
    assert "SpreadByPodCount" in started["priorities"]
    assert "LeastRequestedPriority" in started["priorities"]
    # node-a scores HELD x 10, node-b (at most NEW - 1) x 10: node-b every time.
    assert place(api) == ["node-b"] * NEW


@pytest.mark.parametrize("master", ["store_sqlite,scheduler_priority"], indirect=True)
def test_without_spread_least_requested_ties_go_either_way(
    master: tuple[KubecoreProcess, Api],
) -> None:
    proc, api = master
    assert "SpreadByPodCount" not in proc.wait_event("scheduler starting")["priorities"]
    # No pod requests anything, so both minions score 0 and each pod goes to either at
    # random; with seed 1 some go to node-a despite its HELD pods.
    hosts = place(api)
    assert set(hosts) <= {"node-a", "node-b"}
    assert "node-a" in hosts


def test_the_examples_own_tests_pass() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLE / "tests"), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(EXAMPLE), *filter(None, [os.environ.get("PYTHONPATH")])])},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
