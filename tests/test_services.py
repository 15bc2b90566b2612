"""The real-service fixtures work: etcd (one member and a cluster) and Docker."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import httpx
import pytest

from tests.services import (
    BUSYBOX_PATH,
    EtcdCluster,
    etcd_get,
    etcd_put,
    service_unavailable,
)

if TYPE_CHECKING:
    import docker

T = TypeVar("T")


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def eventually(fn: Callable[[], T], timeout: float = 15.0) -> T:
    """Retry `fn` until it returns without error (e.g. through a leader election)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (httpx.HTTPError, RuntimeError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_missing_service_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="etcd not installed"):
        service_unavailable("etcd not installed: apt-get install etcd-server")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="etcd not installed"):
        service_unavailable("etcd not installed: apt-get install etcd-server")


def test_etcd_gateway_put_and_range(etcd_endpoint: str, key_prefix: str) -> None:
    host, _, port = etcd_endpoint.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    key = key_prefix + "greeting"
    with httpx.Client(base_url=f"http://{etcd_endpoint}", trust_env=False, timeout=5) as c:
        put = c.post("/v3/kv/put", json={"key": b64(key), "value": b64("hello etcd")})
        put.raise_for_status()
        assert int(put.json()["header"]["revision"]) > 0
        got = c.post("/v3/kv/range", json={"key": b64(key)}).json()
        assert got["count"] == "1"
        assert base64.b64decode(got["kvs"][0]["value"]) == b"hello etcd"
        # Prefix range: [prefix, prefix with its last byte incremented).
        end = key_prefix[:-1] + chr(ord(key_prefix[-1]) + 1)
        ranged = c.post("/v3/kv/range", json={"key": b64(key_prefix), "range_end": b64(end)})
        assert [base64.b64decode(kv["key"]).decode() for kv in ranged.json()["kvs"]] == [key]
    assert etcd_get(etcd_endpoint, key_prefix + "absent") is None


def _leader_index(cluster: EtcdCluster) -> int:
    with httpx.Client(trust_env=False, timeout=5) as c:
        status = c.post(f"{cluster.client_urls[0]}/v3/maintenance/status", json={}).json()
        leader = status["leader"]
        for i, url in enumerate(cluster.client_urls):
            st = c.post(f"{url}/v3/maintenance/status", json={}).json()
            if st["header"]["member_id"] == leader:
                return i
    raise AssertionError(f"leader {leader} is not a member")


def test_etcd_cluster_survives_losing_a_member(
    etcd_cluster: Callable[..., EtcdCluster], key_prefix: str
) -> None:
    cluster = etcd_cluster(3)
    assert len(cluster.endpoints) == 3
    assert all(ep.startswith("127.0.0.1:") for ep in cluster.endpoints)
    etcd_put(cluster.endpoints[0], key_prefix + "before", "1")
    for ep in cluster.endpoints:
        assert eventually(partial(etcd_get, ep, key_prefix + "before")) == b"1"

    # Losing the leader is the harder case: the others must elect a new one.
    down = _leader_index(cluster)
    cluster.stop(down, kill=True)
    alive = [ep for i, ep in enumerate(cluster.endpoints) if i != down]
    # Short per-try timeouts: a request caught in the election hangs, a retry does not.
    for ep in alive:
        eventually(partial(etcd_put, ep, key_prefix + "during", ep, timeout=1))
        got = eventually(partial(etcd_get, ep, key_prefix + "during", timeout=1))
        assert got == ep.encode()

    cluster.start(down)
    cluster.wait_healthy([down])
    back = cluster.endpoints[down]
    last_written = alive[-1].encode()
    assert eventually(partial(etcd_get, back, key_prefix + "during", timeout=1)) == last_written
    etcd_put(back, key_prefix + "after", "3")
    assert etcd_get(alive[0], key_prefix + "after") == b"3"


def test_busybox_image_defaults(
    docker_client: docker.DockerClient, busybox_image: str, docker_labels: dict[str, str]
) -> None:
    image = docker_client.images.get(busybox_image)
    assert image.attrs["Config"]["Cmd"] == ["sh"]
    assert f"PATH={BUSYBOX_PATH}" in image.attrs["Config"]["Env"]
    applets = ["sh", "httpd", "nc", "sleep", "cat", "echo", "ls", "env", "wget"]
    out = docker_client.containers.run(
        busybox_image,
        ["sh", "-c", 'echo "$PATH"; which "$@"', "sh", *applets],
        labels=docker_labels,
        network_mode="none",
        remove=True,
    )
    lines = out.decode().split()
    assert lines[0] == BUSYBOX_PATH
    assert [line.rsplit("/", 1)[-1] for line in lines[1:]] == applets


def test_busybox_httpd_on_published_loopback_port(
    docker_client: docker.DockerClient, busybox_image: str, docker_labels: dict[str, str]
) -> None:
    token = uuid.uuid4().hex
    container = docker_client.containers.run(
        busybox_image,
        ["sh", "-c", f"echo {token} > /www/token.txt && exec httpd -f -p 80 -h /www"],
        labels=docker_labels,
        ports={"80/tcp": ("127.0.0.1", None)},
        detach=True,
    )
    try:
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"]["80/tcp"]
        assert bindings and bindings[0]["HostIp"] == "127.0.0.1"
        port = int(bindings[0]["HostPort"])
        url = f"http://127.0.0.1:{port}/token.txt"

        def fetch() -> bytes:
            # The port is published before httpd listens: the first tries may be reset.
            with httpx.Client(trust_env=False, timeout=2) as c:
                r = c.get(url)
                r.raise_for_status()
                return r.content

        assert eventually(fetch, timeout=20) == f"{token}\n".encode()
    finally:
        container.remove(force=True)
    ids = [c.id for c in docker_client.containers.list(all=True)]
    assert container.id not in ids
