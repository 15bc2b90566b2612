"""``kubecore run`` as a real process: it serves, stops cleanly, and fails clearly."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.processes import KubecoreProcess, run_kubecore


def master_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--role", "master", "--plugins", "store_sqlite", "--data-dir", str(tmp_path),
            "--log-format", "json", "--set", "apiserver.port=0", *extra]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_serves_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    with KubecoreProcess(master_args(tmp_path)) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        proc.wait_event("kubecore is up")
        assert httpx.get(f"{url}/healthz").text == "ok"
        assert httpx.get(f"{url}/api").json() == {"versions": ["v1beta1"]}
        missing = httpx.get(f"{url}/nope")
        assert (missing.status_code, missing.text) == (404, 'Not Found: "/nope"')
        assert proc.stop(sig) == 0
        proc.wait_event("stopped")
    assert "Traceback" not in proc.output


@pytest.mark.parametrize(("extra", "young"), [([], 50_000),
                                             (["--set", "kubecore.gc_threshold=0"], 700),
                                             (["--set", "kubecore.gc_threshold=1234"], 1234)])
def test_run_sets_the_garbage_collection_threshold(
    tmp_path: Path, extra: list[str], young: int
) -> None:
    with KubecoreProcess(master_args(tmp_path, *extra)) as proc:
        assert proc.wait_event("starting")["gc_threshold"] == young
        proc.wait_event("kubecore is up")
        assert proc.stop() == 0


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_kubecore([*master_args(tmp_path), "--set", f"apiserver.port={port}"])
    assert result.returncode == 1
    assert "error: apiserver failed to start:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "apiserver.port=abc"], "apiserver.port: Input should be a valid integer"),
        (["--set", "apiserver.prot=1"], "apiserver.prot: unknown key"),
        (["--set", "nosuch.key=1"], "[nosuch]: unknown section"),
        (["--set", "broken"], "expected SECTION.KEY=VALUE"),
        (["--plugins", "nosuch"], "plugin 'nosuch' is not installed"),
        (["--config", "/nonexistent/kubecore.toml"], "cannot read config file"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_kubecore(
        ["run", "--role", "master", "--data-dir", str(tmp_path), *args]
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "kubecore.toml"
    config.write_text('[kubecore]\nrole = "node"\n[apiserver]\nport = 9999\n')
    result = run_kubecore(["config", "--config", str(config), "--plugins", "",
                           "--set", "apiserver.port=1234"])
    assert result.returncode == 0, result.stderr
    assert 'role = "node"' in result.stdout
    assert "port = 1234" in result.stdout


def test_bad_config_file_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "kubecore.toml"
    config.write_text("[apiserver\nport = 1\n")
    result = run_kubecore(["config", "--config", str(config)])
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: config file {config}:")
    assert "Traceback" not in result.stderr


def test_configuration_reference_lists_declared_keys() -> None:
    result = run_kubecore(["config", "--reference"])
    assert result.returncode == 0, result.stderr
    assert "## [apiserver]" in result.stdout
    assert "| `port` | `int` | `8080` | port (0 = any free port) |" in result.stdout
    assert "| `role` | `Literal['all', 'master', 'node']` | `\"all\"` |" in result.stdout


def test_generated_configuration_reference_is_current() -> None:
    """docs/configuration.md is generated, never hand-kept: ``make docs`` rewrites it."""
    result = run_kubecore(["config", "--reference"])
    assert result.returncode == 0, result.stderr
    document = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert document.read_text() == result.stdout, "docs/configuration.md is stale: run make docs"

