"""runtime_docker beyond the shared runtime contract: hooks and configuration, ports
published on loopback, the pod's shared network namespace, adoption by a new instance,
images that are missing with no registry, limits, volumes, names and labels, exec
timeouts, and declining when no daemon answers."""

from __future__ import annotations

import contextlib
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import kubecore_runtime_docker
import pytest
import trio
from kubecore_runtime_docker import DockerRuntime, DockerRuntimeConfig
from kubecore_runtime_docker.convert import (
    IMAGE_NOT_FOUND,
    IMAGE_PULL_FAILED,
    OOM_KILLED,
    container_info,
    docker_name,
    hostname,
    parse_time,
    sandbox_info,
)
from kubecore_runtime_docker.runtime import cpu_shares

from kubecore.api import (
    BoundPod,
    EmptyDir,
    HostDir,
    PodSpec,
    Port,
    Volume,
    VolumeMount,
    VolumeSource,
)
from kubecore.api.types import PULL_NEVER
from kubecore.config import KERNEL_SECTION, ConfigError, resolve
from kubecore.context import Context
from kubecore.plugins import installed_plugins
from kubecore.runtime import ContainerError, ContainerReason, ContainerState, Runtime
from tests.contract.runtime_fixtures import (
    DOCKER_INFRA_COMMAND,
    container,
    find,
    full_name,
    pod,
    run_pod,
    wait_exited,
    wait_until,
)
from tests.services import free_port

if TYPE_CHECKING:
    import docker

SLEEPER = ["sleep", "120"]  # outlives any test, not a killed test run by much
WEB_ROOT_TEXT = b"kubecore busybox test image\n"  # /www/index.html of the test image

Opener = Callable[..., DockerRuntime]


@pytest.fixture
async def open_runtime(
    busybox_image: str, docker_labels: dict[str, str], tmp_path: Path
) -> AsyncIterator[Opener]:
    """Opens DockerRuntimes on a node label of this test's own; at the end closes them
    and removes every sandbox and container of that node."""
    node = f"plugin-{uuid.uuid4().hex[:12]}"
    made: list[DockerRuntime] = []

    def open_(**overrides: Any) -> DockerRuntime:
        options: dict[str, Any] = {
            "node": node,
            "root": tmp_path / "docker",
            "infra_image": busybox_image,
            "infra_command": DOCKER_INFRA_COMMAND,
            "labels": docker_labels,
            **overrides,
        }
        runtime = DockerRuntime(**options)
        made.append(runtime)
        return runtime

    try:
        yield open_
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(30):
            for runtime in made:
                await runtime.aclose()
            sweeper = DockerRuntime(node=node, root=tmp_path / "docker")
            try:
                for sandbox in await sweeper.list_sandboxes():
                    await sweeper.remove_sandbox(sandbox.id)
                for info in await sweeper.list_containers():
                    await sweeper.remove_container(info.id)
            finally:
                await sweeper.aclose()


def context(tmp_path: Path, role: str = "all", **section: Any) -> Context:
    sections = [KERNEL_SECTION, kubecore_runtime_docker.kubecore_config_section()]
    raw = {
        "kubecore": {"data_dir": str(tmp_path), "role": role, "hostname": "node-a"},
        "runtime_docker": section,
    }
    return Context(settings=resolve(raw, sections), hook=None)


def inspect(client: docker.DockerClient, cid: str) -> dict[str, Any]:
    attrs: dict[str, Any] = client.api.inspect_container(cid)
    return attrs


def missing_image() -> str:
    """An image on a loopback registry nobody listens on: a pull fails at once, and no
    traffic leaves the machine."""
    return f"127.0.0.1:{free_port()}/kubecore/missing:test"


# -- plugin, hooks, configuration -------------------------------------------------------


def test_installed_as_a_plugin_with_its_hooks() -> None:
    [info] = [p for p in installed_plugins() if p.name == "runtime_docker"]
    assert info.error is None
    assert (info.distribution, info.version) == ("kubecore-runtime-docker", "0.1.0")
    assert info.hooks == ["kubecore_config_section", "kubecore_runtime"]


def test_config_section(tmp_path: Path) -> None:
    cfg = context(tmp_path).config(DockerRuntimeConfig)
    assert (cfg.infra_image, cfg.infra_command, cfg.host_ip) == (
        "kubecore/pause:latest",
        [],
        "127.0.0.1",
    )
    assert (cfg.allow_privileged, cfg.endpoint, cfg.root) == (False, None, None)
    ctx = context(tmp_path, labels={"team": "a"}, infra_command=["sleep", "9"])
    assert ctx.config(DockerRuntimeConfig).labels == {"team": "a"}
    with pytest.raises(ConfigError, match=r"runtime_docker\.infra_imag: unknown key"):
        context(tmp_path, infra_imag="x")


@pytest.fixture
def dead_socket(tmp_path: Path) -> Iterator[str]:
    """A unix socket that is bound but never listens: connecting is refused."""
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    try:
        yield f"unix://{path}"
    finally:
        sock.close()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback TCP port that accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_declines_when_no_daemon_answers(
    tmp_path: Path, dead_socket: str, silent_endpoint: str
) -> None:
    for endpoint, ping_timeout in ((dead_socket, 2.0), (silent_endpoint, 0.5)):
        begun = time.monotonic()
        ctx = context(tmp_path, endpoint=endpoint, ping_timeout=ping_timeout)
        assert kubecore_runtime_docker.kubecore_runtime(ctx) is None
        assert time.monotonic() - begun < ping_timeout + 2, endpoint


def test_without_its_infra_image_it_declines_unless_told_to_use_docker(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    absent = missing_image()
    ctx = context(tmp_path, infra_image=absent)
    assert kubecore_runtime_docker.kubecore_runtime(ctx) is None
    ctx = context(tmp_path, infra_image=absent, without_infra_image="use")
    runtime = kubecore_runtime_docker.kubecore_runtime(ctx)
    assert runtime is not None
    trio.run(runtime.aclose)
    ctx = context(tmp_path, infra_image=busybox_image)
    present = kubecore_runtime_docker.kubecore_runtime(ctx)
    assert present is not None
    trio.run(present.aclose)


def test_declines_on_a_master(tmp_path: Path, dead_socket: str) -> None:
    ctx = context(tmp_path, role="master", endpoint=dead_socket)
    assert kubecore_runtime_docker.kubecore_runtime(ctx) is None


async def test_the_hook_gives_a_runtime_when_the_daemon_answers(
    docker_client: docker.DockerClient, busybox_image: str, tmp_path: Path
) -> None:
    runtime = kubecore_runtime_docker.kubecore_runtime(context(tmp_path,
                                                               infra_image=busybox_image))
    assert isinstance(runtime, DockerRuntime) and isinstance(runtime, Runtime)
    try:
        assert (runtime.name, runtime.node) == ("docker", "node-a")
        assert runtime.root == tmp_path / "docker"
        await runtime.list_sandboxes()  # talks to the daemon
    finally:
        await runtime.aclose()
        await runtime.aclose()  # idempotent


def test_pure_helpers() -> None:
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("2014-11-17T10:00:00.123456789Z") == pytest.approx(1416218400.123456789)
    assert parse_time("2014-11-17T11:00:00+01:00") == 1416218400.0
    assert (cpu_shares(0), cpu_shares(1), cpu_shares(500), cpu_shares(2000)) == (
        None,
        2,
        512,
        2048,
    )
    name = docker_name("web", "1a2b", "my_pod.default.file", "u/1:2")
    assert re.fullmatch(r"k8s_web\.1a2b_my-pod\.default\.file_u-1-2_[0-9a-f]{8}", name), name
    assert hostname("My_Pod.x") == "my-pod.x"


def inspected(state: dict[str, Any], **labels: str) -> dict[str, Any]:
    """A minimal ``docker inspect`` document of a managed container."""
    return {
        "Id": "f" * 64,
        "Created": "2014-11-17T10:00:00Z",
        "Config": {
            "Image": "sha256:abc",
            "Cmd": ["kubecore-no-such-program", "--flag"],
            "Labels": {
                "kubecore.container.name": "main",
                "kubecore.container.image": "busybox",
                **labels,
            },
        },
        "State": {"StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"}
        | state,
    }


def test_states_from_inspect() -> None:
    oom = container_info(
        inspected(
            {
                "Status": "exited",
                "ExitCode": 137,
                "OOMKilled": True,
                "StartedAt": "2014-11-17T10:00:01Z",
                "FinishedAt": "2014-11-17T10:00:02.5Z",
            }
        )
    )
    assert (oom.state, oom.exit_code, oom.reason) == (ContainerState.EXITED, 137, OOM_KILLED)
    assert (oom.started_at, oom.finished_at) == (1416218401.0, 1416218402.5)
    assert "SIGKILL" in oom.message and oom.image == "busybox"

    error = "failed to create shim task: OCI runtime create failed: runc create failed:" \
        ' unable to start container process: exec: "kubecore-no-such-program":' \
        " executable file not found in $PATH: unknown"
    failed = container_info(inspected({"Status": "created", "ExitCode": 127, "Error": error}))
    assert (failed.state, failed.reason, failed.exit_code) == (
        ContainerState.EXITED,
        ContainerReason.CANNOT_RUN,
        127,
    )
    assert failed.message == (
        "cannot run 'kubecore-no-such-program --flag' (image 'busybox'): exec:"
        ' "kubecore-no-such-program": executable file not found in $PATH'
    )
    assert failed.finished_at == failed.created_at == 1416218400.0

    created = inspected({"Status": "created", "ExitCode": 0})
    assert container_info(created, starting=True).state is ContainerState.WAITING
    abandoned = container_info(created)
    assert (abandoned.state, abandoned.reason) == (
        ContainerState.EXITED,
        ContainerReason.CANNOT_RUN,
    )
    placeholder = container_info(
        inspected(
            {"Status": "created"},
            **{"kubecore.failed.reason": IMAGE_NOT_FOUND, "kubecore.failed.message": "gone"},
        )
    )
    assert (placeholder.state, placeholder.reason, placeholder.message) == (
        ContainerState.EXITED,
        IMAGE_NOT_FOUND,
        "gone",
    )


def test_sandbox_ports_pair_specs_with_bindings() -> None:
    specs = (
        '[{"name":"a","containerPort":80,"hostPort":0,"protocol":"TCP","hostIP":"127.0.0.1"},'
        '{"name":"b","containerPort":80,"hostPort":8080,"protocol":"TCP","hostIP":"127.0.0.1"}]'
    )
    data = {
        "Id": "e" * 64,
        "Created": "2014-11-17T10:00:00Z",
        "Config": {"Labels": {"kubecore.sandbox.ports": specs, "kubecore.pod.uid": "u"}},
        "State": {"Running": True},
        "NetworkSettings": {
            "Ports": {
                "80/tcp": [
                    {"HostIp": "127.0.0.1", "HostPort": "8080"},
                    {"HostIp": "127.0.0.1", "HostPort": "49153"},
                ]
            }
        },
    }
    info = sandbox_info(data, "127.0.0.1")
    assert [(m.name, m.host_port) for m in info.ports] == [("a", 49153), ("b", 8080)]
    data["State"] = {"Running": False}
    stopped = sandbox_info(data, "127.0.0.1")
    assert not stopped.ready
    assert [(m.name, m.host_port) for m in stopped.ports] == [("a", 0), ("b", 8080)]


# -- ports and networking --------------------------------------------------------------


async def test_ports_are_published_on_loopback_and_reachable(
    open_runtime: Opener, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    runtime = open_runtime()
    fixed = free_port()
    bound = pod(
        container(
            "web",
            ["httpd", "-f", "-p", "80", "-h", "/www"],
            image=busybox_image,
            ports=[
                Port(name="http", container_port=80),
                Port(name="fixed", container_port=80, host_port=fixed),
                Port(name="dns", container_port=53, protocol="UDP"),
            ],
        )
    )
    sandbox, [web] = await run_pod(runtime, bound)
    by_name = {m.name: m for m in sandbox.ports}
    assert [m.name for m in sandbox.ports] == ["http", "fixed", "dns"]
    assert all(m.host_ip == "127.0.0.1" and m.host_port > 0 for m in sandbox.ports)
    assert by_name["fixed"].host_port == fixed
    assert by_name["http"].host_port != fixed
    assert (by_name["dns"].protocol, by_name["dns"].container_port) == ("UDP", 53)

    published = inspect(docker_client, sandbox.id)["NetworkSettings"]["Ports"]
    assert {b["HostIp"] for bindings in published.values() for b in bindings} == {"127.0.0.1"}
    assert {(k, b["HostPort"]) for k, v in published.items() for b in v} == {
        ("80/tcp", str(by_name["http"].host_port)),
        ("80/tcp", str(fixed)),
        ("53/udp", str(by_name["dns"].host_port)),
    }
    [listed] = await runtime.list_sandboxes()
    assert listed.ports == sandbox.ports

    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        for mapping in (by_name["http"], by_name["fixed"]):
            url = f"http://{mapping.host_ip}:{mapping.host_port}/"

            async def fetched(url: str = url) -> bytes | None:
                try:
                    response = await client.get(url)
                except httpx.TransportError:
                    return None
                return response.content if response.status_code == 200 else None

            assert await wait_until(fetched, f"{url} to answer") == WEB_ROOT_TEXT

    stats = await runtime.container_stats(web.id)
    assert stats.network_rx_bytes > 0 and stats.network_tx_bytes > 0


async def test_containers_of_a_pod_share_the_network_namespace(
    open_runtime: Opener, busybox_image: str
) -> None:
    runtime = open_runtime()
    fetch = "until wget -q -O - http://127.0.0.1:8080/; do sleep 0.1; done"
    bound = pod(
        container("server", ["httpd", "-f", "-p", "8080", "-h", "/www"], image=busybox_image),
        container("client", ["sh", "-c", fetch], image=busybox_image),
    )
    _, [server, client] = await run_pod(runtime, bound)
    done = await wait_exited(runtime, client.id)
    assert done.exit_code == 0
    assert WEB_ROOT_TEXT in await runtime.container_logs(client.id)
    info = await find(runtime, server.id)
    assert info is not None and info.state is ContainerState.RUNNING


# -- adoption ------------------------------------------------------------------------


async def test_a_new_instance_adopts_without_duplicating_or_restarting(
    open_runtime: Opener, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    first = open_runtime()
    bound = pod(
        container("keep", SLEEPER, image=busybox_image, ports=[Port(container_port=80)])
    )
    sandbox, [started] = await run_pod(first, bound)
    ids = (sandbox.id, started.id)
    before = {cid: inspect(docker_client, cid)["State"]["StartedAt"] for cid in ids}
    await first.aclose()

    second = open_runtime()
    again = await second.run_sandbox(bound, full_name(bound))
    assert again.id == sandbox.id and again.ports == sandbox.ports
    [adopted] = await second.list_containers(all=False)
    assert (adopted.id, adopted.state, adopted.spec_hash) == (
        started.id,
        ContainerState.RUNNING,
        "keep-hash",
    )
    pod_containers = docker_client.containers.list(
        all=True, filters={"label": f"kubecore.pod.uid={bound.uid}"}
    )
    assert {c.id for c in pod_containers} == {sandbox.id, started.id}
    after = {cid: inspect(docker_client, cid)["State"]["StartedAt"] for cid in before}
    assert after == before  # nothing was restarted

    await second.stop_sandbox(sandbox.id, 0)
    info = await find(second, started.id)
    assert info is not None and info.state is ContainerState.EXITED


async def test_another_node_sees_nothing_and_names_follow_v05(
    open_runtime: Opener,
    busybox_image: str,
    docker_client: docker.DockerClient,
    docker_labels: dict[str, str],
) -> None:
    runtime = open_runtime()
    bound = pod(container("main", SLEEPER, image=busybox_image), pod_id="named")
    sandbox, [started] = await run_pod(runtime, bound)

    attrs = inspect(docker_client, started.id)
    assert re.fullmatch(
        rf"/k8s_main\.main-hash_named\.default\.test_{bound.uid}_[0-9a-f]{{8}}", attrs["Name"]
    ), attrs["Name"]
    labels = attrs["Config"]["Labels"]
    assert docker_labels.items() <= labels.items()
    assert labels["kubecore.managed"] == "1" and labels["kubecore.node"] == runtime.node
    assert labels["kubecore.pod.full-name"] == full_name(bound)
    assert labels["kubecore.container.hash"] == "main-hash"
    assert labels["kubecore.sandbox"] == sandbox.id
    assert inspect(docker_client, sandbox.id)["Config"]["Hostname"] == "named"

    stranger = open_runtime(node=f"{runtime.node}-other")
    assert await stranger.list_sandboxes() == []
    assert await stranger.list_containers() == []
    with pytest.raises(ContainerError) as err:
        await stranger.container_logs(started.id)
    assert err.value.reason == ContainerReason.NOT_FOUND
    await stranger.remove_sandbox(sandbox.id)  # not its own: no error, nothing done
    assert await find(runtime, started.id) is not None


# -- images --------------------------------------------------------------------------


async def test_a_missing_image_fails_fast_with_a_clear_error(
    open_runtime: Opener, busybox_image: str
) -> None:
    runtime = open_runtime()
    image = missing_image()
    never = container("never", SLEEPER, image="kubecore/missing:never")
    never.image_pull_policy = PULL_NEVER
    bound = pod(container("app", SLEEPER, image=image), never)
    sandbox = await runtime.run_sandbox(bound, full_name(bound))

    begun = time.monotonic()
    with pytest.raises(ContainerError) as err:
        await runtime.start_container(
            bound, full_name(bound), sandbox, bound.spec.containers[0], "app-hash"
        )
    assert time.monotonic() - begun < 5
    assert err.value.reason in (IMAGE_PULL_FAILED, IMAGE_NOT_FOUND)
    assert image in err.value.message

    with pytest.raises(ContainerError) as err_never:
        await runtime.start_container(bound, full_name(bound), sandbox, never, "never-hash")
    assert err_never.value.reason == IMAGE_NOT_FOUND
    assert "kubecore/missing:never" in err_never.value.message
    assert PULL_NEVER in err_never.value.message

    listed = {c.name: c for c in await runtime.list_containers()}
    for name, failure in (("app", err.value), ("never", err_never.value)):
        info = listed[name]
        assert info.state is ContainerState.EXITED
        assert (info.reason, info.message) == (failure.reason, failure.message)
        assert info.exit_code is None and info.finished_at is not None
    assert listed["app"].image == image
    await runtime.remove_container(listed["app"].id)
    assert await find(runtime, listed["app"].id) is None


async def test_a_missing_infra_image_is_a_clear_error(open_runtime: Opener) -> None:
    image = missing_image().replace("missing", "pause")
    runtime = open_runtime(infra_image=image)
    bound = pod(container("app", SLEEPER, image="unused"))
    with pytest.raises(ContainerError) as err:
        await runtime.run_sandbox(bound, full_name(bound))
    assert err.value.reason in (IMAGE_PULL_FAILED, IMAGE_NOT_FOUND)
    assert f"infra image {image!r}" in err.value.message
    assert await runtime.list_sandboxes() == []


# -- container spec --------------------------------------------------------------------


async def test_memory_and_cpu_are_applied(
    open_runtime: Opener, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    runtime = open_runtime()
    limited = container("limited", SLEEPER, image=busybox_image)
    limited.memory, limited.cpu = 64 << 20, 500
    tiny = container("tiny", SLEEPER, image=busybox_image)
    tiny.cpu = 1
    plain = container("plain", SLEEPER, image=busybox_image)
    _, started = await run_pod(runtime, pod(limited, tiny, plain))
    configs = [inspect(docker_client, c.id)["HostConfig"] for c in started]
    assert [(h["Memory"], h["CpuShares"]) for h in configs] == [
        (64 << 20, 512),
        (0, 2),
        (0, 0),
    ]
    stats = await runtime.container_stats(started[0].id)
    assert stats.memory_limit_bytes == 64 << 20


async def test_empty_dir_and_host_dir_volumes(
    open_runtime: Opener, busybox_image: str, tmp_path: Path
) -> None:
    runtime = open_runtime()
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("from the host\n")
    writer = container(
        "writer",
        ["sh", "-c", "echo shared > /scratch/note; cat /data/in.txt;"
         " touch /data/new 2>/dev/null && echo writable || echo read-only"],
        image=busybox_image,
    )
    writer.volume_mounts = [
        VolumeMount(name="scratch", mount_path="/scratch"),
        VolumeMount(name="data", mount_path="/data", read_only=True),
    ]
    reader = container(
        "reader",
        ["sh", "-c", "until [ -e /s/note ]; do sleep 0.05; done; cat /s/note"],
        image=busybox_image,
    )
    reader.volume_mounts = [VolumeMount(name="scratch", mount_path="/s")]
    bound = BoundPod(
        id="volumes",
        uid=str(uuid.uuid4()),
        namespace="default",
        spec=PodSpec(
            containers=[writer, reader],
            volumes=[
                Volume(name="scratch", source=VolumeSource(empty_dir=EmptyDir())),
                Volume(name="data", source=VolumeSource(host_dir=HostDir(path=str(host)))),
            ],
        ),
    )
    sandbox, [wrote, read] = await run_pod(runtime, bound)
    await wait_exited(runtime, wrote.id)
    await wait_exited(runtime, read.id)
    assert await runtime.container_logs(wrote.id) == b"from the host\nread-only\n"
    assert await runtime.container_logs(read.id) == b"shared\n"
    pod_dir = runtime.root / "pods" / bound.uid
    assert (pod_dir / "volumes" / "scratch" / "note").read_text() == "shared\n"
    assert not (host / "new").exists()

    await runtime.remove_sandbox(sandbox.id)
    assert not pod_dir.exists()
    assert (host / "in.txt").exists()


async def test_privileged_only_when_allowed(
    open_runtime: Opener, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    wanted = container("root", SLEEPER, image=busybox_image)
    wanted.privileged = True
    bound = pod(wanted)
    refusing = open_runtime()
    sandbox = await refusing.run_sandbox(bound, full_name(bound))
    with pytest.raises(ContainerError) as err:
        await refusing.start_container(bound, full_name(bound), sandbox, wanted, "h")
    assert err.value.reason == ContainerReason.CANNOT_RUN and "privileged" in err.value.message

    allowing = open_runtime(allow_privileged=True)
    # Some hosts cannot grant every capability ("unable to apply caps"): what matters
    # here is what the runtime asked Docker for.
    with contextlib.suppress(ContainerError):
        await allowing.start_container(bound, full_name(bound), sandbox, wanted, "h")
    made = docker_client.containers.list(
        all=True, filters={"label": [f"kubecore.pod.uid={bound.uid}", "kubecore.role=container"]}
    )
    assert sorted(c.attrs["HostConfig"]["Privileged"] for c in made) == [False, True]


# -- exec ------------------------------------------------------------------------------


async def test_exec_failures_and_a_timeout_that_kills_the_whole_command(
    open_runtime: Opener, busybox_image: str
) -> None:
    runtime = open_runtime()
    _, [main] = await run_pod(runtime, pod(container("main", SLEEPER, image=busybox_image)))

    with pytest.raises(ContainerError) as err:
        await runtime.exec_in_container(main.id, ["kubecore-no-such-program"], timeout=10)
    assert err.value.reason == ContainerReason.EXEC_FAILED
    assert "kubecore-no-such-program" in err.value.message

    begun = time.monotonic()
    with pytest.raises(ContainerError) as err:
        await runtime.exec_in_container(
            main.id, ["sh", "-c", "sleep 31 & sleep 32; echo never"], timeout=0.3
        )
    assert err.value.reason == ContainerReason.EXEC_TIMEOUT
    # Well short of the command's 31 s, with room for a daemon slowed by other work.
    assert time.monotonic() - begun < 20

    async def gone() -> bool:
        _, listing = await runtime.exec_in_container(main.id, ["ps"], timeout=10)
        return b"sleep 31" not in listing and b"sleep 32" not in listing

    await wait_until(gone, "the timed-out command's processes to be killed")
