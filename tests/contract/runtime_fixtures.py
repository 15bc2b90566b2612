"""Runtimes under the runtime contract suite, and helpers for its tests.

Each runtime plugin contributes one harness factory to :data:`HARNESSES`; the
``runtime_harness`` fixture is parametrized over its keys, so adding a runtime to the
suite is one entry there. A harness opens runtime instances on one backend (the same
root, the same Docker daemon), says which image and which listening command its
containers use, and removes everything the test made, even when the test failed.

Commands in the suite are limited to what both a busybox image and a Debian host have:
``sh -c``, ``sleep``, ``echo``, ``cat``, ``pwd``; the listening command is the
harness's.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from kubecore.api import BoundPod, Container, EnvVar, PodSpec, Port
from kubecore.runtime import ContainerInfo, ContainerState, Runtime, SandboxInfo

T = TypeVar("T")

#: Seconds any condition in the suite may take before the test fails.
DEADLINE = 10.0
#: Seconds the harness's cleanup may take.
CLEANUP_DEADLINE = 30.0


@dataclass
class RuntimeHarness:
    """One runtime plugin under test.

    ``factory`` makes a new runtime instance on the harness's backend; an instance made
    after another was closed must adopt what the first left running.
    """

    kind: str
    image: str
    factory: Callable[[], Runtime]
    listen_command: Callable[[int], list[str]]
    opened: list[Runtime] = field(default_factory=list)

    def open(self) -> Runtime:
        runtime = self.factory()
        self.opened.append(runtime)
        return runtime

    async def cleanup(self) -> None:
        """Close every instance, then remove every sandbox and container left."""
        for runtime in self.opened:
            await runtime.aclose()
        sweeper = self.factory()
        try:
            for sandbox in await sweeper.list_sandboxes():
                await sweeper.remove_sandbox(sandbox.id)
            for info in await sweeper.list_containers():
                await sweeper.stop_container(info.id, 0)
                await sweeper.remove_container(info.id)
        finally:
            await sweeper.aclose()


HarnessFactory = Callable[
    [pytest.FixtureRequest, Path], AbstractAsyncContextManager[RuntimeHarness]
]


@asynccontextmanager
async def exec_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RuntimeHarness]:
    from kubecore_runtime_exec import ExecRuntime

    root = tmp_path / "exec"
    busybox = shutil.which("busybox")

    def listen(port: int) -> list[str]:
        if busybox:
            return [busybox, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "."]
        return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]

    yield RuntimeHarness(
        kind="exec",
        image="busybox",  # recorded, not used
        factory=lambda: ExecRuntime(root),
        listen_command=listen,
    )


#: The infra container's command in the busybox test image (its own CMD is ``sh``).
DOCKER_INFRA_COMMAND = ["sleep", "2147483647"]


@asynccontextmanager
async def docker_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RuntimeHarness]:
    """The Docker runtime on the local daemon, with the busybox test image as both the
    containers' and the infra image. Each test gets a node label of its own, so it sees
    only its own containers; the test labels let the session remove leftovers."""
    from kubecore_runtime_docker import DockerRuntime

    image: str = request.getfixturevalue("busybox_image")  # skips (or fails in CI)
    labels: dict[str, str] = request.getfixturevalue("docker_labels")
    node = f"contract-{uuid.uuid4().hex[:12]}"
    root = tmp_path / "docker"

    def listen(port: int) -> list[str]:
        return ["httpd", "-f", "-p", str(port), "-h", "/www"]

    yield RuntimeHarness(
        kind="docker",
        image=image,
        factory=lambda: DockerRuntime(
            node=node,
            root=root,
            infra_image=image,
            infra_command=DOCKER_INFRA_COMMAND,
            labels=labels,
        ),
        listen_command=listen,
    )


#: Runtime kind -> harness factory.
HARNESSES: dict[str, HarnessFactory] = {
    "exec": exec_harness,
    "docker": docker_harness,
}

#: Marks of a harness's runs (``-m "not docker"`` leaves out the Docker ones).
HARNESS_MARKS: dict[str, tuple[pytest.MarkDecorator, ...]] = {
    "docker": (pytest.mark.docker,),
}


@pytest.fixture(
    name="runtime_harness",
    params=[pytest.param(kind, marks=HARNESS_MARKS.get(kind, ())) for kind in sorted(HARNESSES)],
)
async def runtime_harness_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RuntimeHarness]:
    async with HARNESSES[request.param](request, tmp_path) as harness:
        try:
            yield harness
        finally:
            # Runs even when the test failed and its run is being cancelled.
            with trio.CancelScope(shield=True), trio.fail_after(CLEANUP_DEADLINE):
                await harness.cleanup()


@pytest.fixture(name="runtime")
def runtime_fixture(runtime_harness: RuntimeHarness) -> Runtime:
    """An open runtime instance of the harness (closed by the harness's cleanup)."""
    return runtime_harness.open()


# -- pods ------------------------------------------------------------------------------


def container(
    name: str,
    command: list[str],
    *,
    image: str,
    env: dict[str, str] | None = None,
    working_dir: str = "",
    ports: list[Port] | None = None,
) -> Container:
    return Container(
        name=name,
        image=image,
        command=command,
        working_dir=working_dir,
        env=[EnvVar(name=k, value=v) for k, v in (env or {}).items()],
        ports=ports or [],
    )


def pod(*containers: Container, pod_id: str = "") -> BoundPod:
    """A bound pod with a fresh uid and (unless given) a fresh id."""
    return BoundPod(
        id=pod_id or f"pod-{uuid.uuid4().hex[:8]}",
        uid=str(uuid.uuid4()),
        namespace="default",
        spec=PodSpec(containers=list(containers)),
    )


def full_name(bound: BoundPod) -> str:
    return f"{bound.id}.{bound.namespace}.test"


async def run_pod(runtime: Runtime, bound: BoundPod) -> tuple[SandboxInfo, list[ContainerInfo]]:
    """Run the pod's sandbox and start each of its containers (hash = ``<name>-hash``)."""
    sandbox = await runtime.run_sandbox(bound, full_name(bound))
    started = [
        await runtime.start_container(bound, full_name(bound), sandbox, c, f"{c.name}-hash")
        for c in bound.spec.containers
    ]
    return sandbox, started


# -- waiting on conditions -------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[T | None]], what: str, within: float = DEADLINE
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    with trio.move_on_after(within):
        while True:
            result = await check()
            if result:
                return result
            await trio.sleep(0.02)
    raise AssertionError(f"timed out after {within:g}s waiting for {what}")


async def find(runtime: Runtime, container_id: str) -> ContainerInfo | None:
    for info in await runtime.list_containers():
        if info.id == container_id:
            return info
    return None


async def wait_exited(
    runtime: Runtime, container_id: str, within: float = DEADLINE
) -> ContainerInfo:
    async def exited() -> ContainerInfo | None:
        info = await find(runtime, container_id)
        return info if info is not None and info.state is ContainerState.EXITED else None

    return await wait_until(exited, f"container {container_id} to exit", within)
