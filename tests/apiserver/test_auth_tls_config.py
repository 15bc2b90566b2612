"""Bearer tokens, HTTPS, the ``[apiserver]`` section and the store requirement."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pydantic
import pytest

from kubecore import kernel
from kubecore.api import Minion, Pod
from kubecore.apiserver import plugin
from kubecore.apiserver.auth import read_token_file
from kubecore.apiserver.registry import Registry
from kubecore.client import AsyncClient
from kubecore.errors import StartupError
from kubecore.store import Store
from tests.apiserver.harness import TIMEOUT, StartServer
from tests.services import service_unavailable

P = "/api/v1beta1"


async def test_bearer_tokens(store: Store, start_server: StartServer) -> None:
    url = await start_server(Registry(store), tokens=frozenset({"s3cret", "other"}))
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        assert (await http.get("/healthz")).text == "ok"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Basic s3cret"}, {"Authorization": "Bearer s3cre"}):
            for path in ("/api", f"{P}/pods", f"{P}/watch/pods", "/nope"):
                denied = await http.get(path, headers=headers)
                assert denied.status_code == 401, (headers, path)
                assert denied.headers["www-authenticate"].startswith("Bearer")
                body = denied.json()
                assert (body["kind"], body["code"], body["reason"]) == ("Status", 401,
                                                                        "Unauthorized")
        for token in ("s3cret", "other"):
            allowed = await http.get(f"{P}/pods", headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200
    async with AsyncClient(url, token="s3cret") as client:
        assert (await client.list(Pod)).items == []


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# comment\n\nabc,admin,1\n  def  \n")
    assert read_token_file(path) == frozenset({"abc", "def"})
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no token"):
        read_token_file(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(tmp_path / "missing")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        service_unavailable("openssl not installed: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


async def test_https(
    store: Store, start_server: StartServer, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    url = await start_server(Registry(store), cert=cert, key=key)
    assert url.startswith("https://127.0.0.1:")
    async with AsyncClient(url, verify=str(cert)) as client:
        created = await client.create(Minion(id="node-a"))
        assert created.resource_version > 0
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get("/healthz")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"portal_net": "127.99.0.0/31"}, "too small"),
        ({"portal_net": "127.99.0.1/24"}, "host bits set"),
        ({"portal_net": "nonsense"}, "portal_net"),
        ({"host_key": "/registry/hosts/kubelet"}, "{host}"),
        ({"host_key": "registry/{host}"}, "start with"),
        ({"tls_cert_file": "/c.pem"}, "together"),
        ({"tls_key_file": "/k.pem"}, "together"),
        ({"token_files": "/t"}, "Extra inputs"),
    ],
)
def test_config_is_validated(values: dict[str, str], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message.replace("{", r"\{")):
        plugin.ApiserverConfig.model_validate(values)


def test_config_defaults() -> None:
    cfg = plugin.ApiserverConfig()
    assert (cfg.address, cfg.port, cfg.portal_net, cfg.host_key) == (
        "127.0.0.1", 8080, "127.77.0.0/16", "/registry/hosts/{host}/kubelet")
    assert cfg.token_file is None and cfg.tls_cert_file is None and cfg.tls_key_file is None
    v05 = plugin.ApiserverConfig(host_key="/registry/nodes/{host}/boundpods")
    assert v05.host_key == "/registry/nodes/{host}/boundpods"


def test_the_apiserver_needs_a_store() -> None:
    ctx = kernel.prepare({"kubecore": {"plugins": [], "role": "master"}})
    assert ctx.store is None
    with pytest.raises(StartupError, match="the apiserver needs a store plugin: select "
                       "store_sqlite or store_etcd"):
        plugin.kubecore_components(ctx)
    node = kernel.prepare({"kubecore": {"plugins": [], "role": "node"}})
    assert plugin.kubecore_components(node) == []


def test_a_master_using_another_apiserver_runs_none_and_needs_no_store() -> None:
    ctx = kernel.prepare({"kubecore": {"plugins": [], "role": "master",
                                       "api_server": "http://127.0.0.1:8080"}})
    assert ctx.store is None
    assert plugin.kubecore_components(ctx) == []
