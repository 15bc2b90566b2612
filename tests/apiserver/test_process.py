"""``kubecore run --role master`` as a real process: the API over the store_sqlite
plugin, bearer tokens, state kept across restarts, and no start without a store."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from kubecore.api import Minion, Pod, decode_value
from kubecore.client import ApiError, Client
from tests.apiserver.objects import pod
from tests.processes import KubecoreProcess, run_kubecore


def master(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--role", "master", "--plugins", "store_sqlite", "--data-dir",
            str(tmp_path), "--log-format", "json", "--set", "apiserver.port=0", *extra]


def test_master_serves_the_api_with_tokens_and_keeps_state(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret,admin,1\n")
    args = master(tmp_path, "--set", f'apiserver.token_file="{tokens}"',
                  "--set", 'apiserver.host_key="/registry/nodes/{host}/boundpods"')
    with KubecoreProcess(args) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        with Client(url) as anonymous, pytest.raises(ApiError) as denied:
            anonymous.list(Pod)
        assert denied.value.code == 401
        with Client(url, token="s3cret") as client:
            client.create(decode_value(pod(), kind=Pod))
            client.bind("web-1", "node-a")
        assert proc.stop() == 0
    assert "Traceback" not in proc.output
    with KubecoreProcess(master(tmp_path)) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        with Client(url) as client:
            assert client.get(Pod, "web-1").desired_state.host == "node-a"
        assert proc.stop() == 0


def test_an_open_watch_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    with KubecoreProcess(master(tmp_path)) as proc:
        url = httpx.URL(proc.wait_event("listening", logger="kubecore.apiserver")["url"])
        assert url.port is not None
        with socket.create_connection(("127.0.0.1", url.port), timeout=10) as sock:
            sock.sendall(b"GET /api/v1beta1/watch/pods HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert proc.stop() == 0
            assert time.monotonic() - started < 5
            # the server ended the response: the stream reads to its end
            while sock.recv(4096):
                pass
    assert "Traceback" not in proc.output


def test_a_master_without_a_store_does_not_start(tmp_path: Path) -> None:
    result = run_kubecore(["run", "--role", "master", "--plugins", "", "--data-dir",
                           str(tmp_path)])
    assert result.returncode == 1
    assert ("the apiserver needs a store plugin: select store_sqlite or store_etcd"
            in result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("in_process", [True, False])
def test_components_reach_the_apiserver_of_their_process(tmp_path: Path,
                                                         in_process: bool) -> None:
    args = master(tmp_path, "--plugins", "store_sqlite,scheduler_priority",
                  "--set", f"apiserver.in_process_clients={str(in_process).lower()}")
    with KubecoreProcess(args) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        assert proc.wait_event("scheduler starting")["in_process"] is in_process
        controllers = [proc.wait_event("controller starting", component=name)
                       for name in ("replication-manager", "endpoints-controller")]
        assert [c["in_process"] for c in controllers] == [in_process, in_process]
        with Client(url) as client:
            client.create(decode_value({"kind": "Minion", "id": "node-a",
                                        "hostIP": "127.0.0.1"}, kind=Minion))
            client.create(decode_value(pod(), kind=Pod))
            assert proc.wait_event("pod scheduled", pod="web-1", timeout=30)["host"] == "node-a"
            assert client.get(Pod, "web-1").desired_state.host == "node-a"
        assert proc.stop() == 0
    assert "Traceback" not in proc.output
