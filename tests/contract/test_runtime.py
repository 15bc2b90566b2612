"""The runtime contract (``kubecore.runtime``), run against every runtime plugin.

Each test runs once per harness in ``runtime_fixtures.HARNESSES``; the harness removes
every sandbox and container a test made, whether it passed or not.
"""

from __future__ import annotations

import time

import pytest
import trio

from kubecore.api import Port
from kubecore.runtime import (
    ContainerError,
    ContainerReason,
    ContainerState,
    Runtime,
)
from tests.contract.runtime_fixtures import (  # noqa: F401  (fixtures are found by name)
    RuntimeHarness,
    container,
    find,
    full_name,
    pod,
    run_pod,
    runtime_fixture,
    runtime_harness_fixture,
    wait_exited,
    wait_until,
)
from tests.services import free_port

SLEEPER = ["sleep", "120"]  # outlives any test, not a killed test run by much


async def test_sandbox_lifecycle(runtime: Runtime, runtime_harness: RuntimeHarness) -> None:
    port = free_port()
    bound = pod(
        container(
            "www",
            SLEEPER,
            image=runtime_harness.image,
            ports=[Port(name="http", container_port=port)],
        )
    )
    sandbox = await runtime.run_sandbox(bound, full_name(bound))
    assert sandbox.ready
    assert (sandbox.pod_uid, sandbox.pod_full_name) == (bound.uid, full_name(bound))
    [mapping] = sandbox.ports
    assert (mapping.container_port, mapping.protocol, mapping.name) == (port, "TCP", "http")
    assert mapping.host_ip == "127.0.0.1" and mapping.host_port > 0

    listed = {s.id: s for s in await runtime.list_sandboxes()}
    assert listed[sandbox.id].ready and listed[sandbox.id].pod_uid == bound.uid

    started = await runtime.start_container(
        bound, full_name(bound), sandbox, bound.spec.containers[0], "h1"
    )
    await runtime.stop_sandbox(sandbox.id, 0)
    stopped = {s.id: s for s in await runtime.list_sandboxes()}
    assert sandbox.id in stopped and not stopped[sandbox.id].ready
    info = await find(runtime, started.id)
    assert info is not None and info.state is ContainerState.EXITED

    with pytest.raises(ContainerError) as err:
        await runtime.start_container(
            bound, full_name(bound), sandbox, bound.spec.containers[0], "h1"
        )
    assert err.value.reason == ContainerReason.SANDBOX_NOT_READY

    await runtime.remove_sandbox(sandbox.id)
    assert sandbox.id not in {s.id for s in await runtime.list_sandboxes()}
    assert await find(runtime, started.id) is None
    # Unknown ids are no error.
    await runtime.stop_sandbox(sandbox.id, 0)
    await runtime.remove_sandbox(sandbox.id)


async def test_running_container_is_listed_with_its_hash(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    bound = pod(container("main", SLEEPER, image=runtime_harness.image))
    before = time.time()
    _, [started] = await run_pod(runtime, bound)
    assert started.state is ContainerState.RUNNING

    running = {c.id: c for c in await runtime.list_containers(all=False)}
    info = running[started.id]
    assert info.state is ContainerState.RUNNING
    assert (info.name, info.spec_hash, info.image) == ("main", "main-hash", runtime_harness.image)
    assert (info.pod_uid, info.pod_full_name) == (bound.uid, full_name(bound))
    assert info.started_at is not None and info.started_at >= before - 1
    assert info.finished_at is None and info.exit_code is None


async def test_logs_hold_stdout_and_stderr(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    # Docker reads stdout and stderr through separate pipes: only lines apart in time
    # keep their order across the two streams.
    script = "echo first; echo second >&2; sleep 0.2; echo third"
    bound = pod(container("talk", ["sh", "-c", script], image=runtime_harness.image))
    _, [started] = await run_pod(runtime, bound)
    await wait_exited(runtime, started.id)

    logs = await runtime.container_logs(started.id)
    assert sorted(logs.splitlines()) == [b"first", b"second", b"third"]
    assert await runtime.container_logs(started.id, tail=1) == b"third\n"
    assert await runtime.container_logs(started.id, tail=0) == b""

    with pytest.raises(ContainerError) as err:
        await runtime.container_logs(started.id + "0")
    assert err.value.reason == ContainerReason.NOT_FOUND


async def test_exit_code_and_times_are_recorded(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    image = runtime_harness.image
    bound = pod(
        container("fails", ["sh", "-c", "exit 3"], image=image),
        container("works", ["sh", "-c", "exit 0"], image=image),
    )
    _, [fails, works] = await run_pod(runtime, bound)

    failed = await wait_exited(runtime, fails.id)
    assert failed.exit_code == 3 and failed.reason == ContainerReason.ERROR
    assert failed.started_at is not None and failed.finished_at is not None
    assert failed.finished_at >= failed.started_at
    done = await wait_exited(runtime, works.id)
    assert done.exit_code == 0 and done.reason == ContainerReason.COMPLETED

    # Dead containers stay listed (all=True) until removed; all=False leaves them out.
    assert {fails.id, works.id} <= {c.id for c in await runtime.list_containers()}
    assert not {fails.id, works.id} & {c.id for c in await runtime.list_containers(all=False)}


async def test_a_new_start_is_a_new_container(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    bound = pod(container("once", ["sh", "-c", "echo run"], image=runtime_harness.image))
    sandbox, [first] = await run_pod(runtime, bound)
    await wait_exited(runtime, first.id)
    second = await runtime.start_container(
        bound, full_name(bound), sandbox, bound.spec.containers[0], "once-hash"
    )
    assert second.id != first.id
    await wait_exited(runtime, second.id)
    assert await runtime.container_logs(first.id) == b"run\n"
    assert await runtime.container_logs(second.id) == b"run\n"


async def test_stop_lets_a_process_that_handles_sigterm_exit(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    script = "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
    bound = pod(container("polite", ["sh", "-c", script], image=runtime_harness.image))
    _, [started] = await run_pod(runtime, bound)

    async def ready() -> bool:
        return b"ready" in await runtime.container_logs(started.id)

    await wait_until(ready, "the trap to be set")
    begun = time.monotonic()
    await runtime.stop_container(started.id, grace_period=30)
    assert time.monotonic() - begun < 10  # it exited by itself, long before the grace

    info = await find(runtime, started.id)
    assert info is not None and info.state is ContainerState.EXITED
    assert info.exit_code == 0
    assert b"bye" in await runtime.container_logs(started.id)


async def test_stop_kills_a_process_that_ignores_sigterm_after_the_grace(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    script = "trap '' TERM; echo ready; while :; do sleep 0.1; done"
    bound = pod(container("stubborn", ["sh", "-c", script], image=runtime_harness.image))
    _, [started] = await run_pod(runtime, bound)

    async def ready() -> bool:
        return b"ready" in await runtime.container_logs(started.id)

    await wait_until(ready, "the trap to be set")
    grace = 0.5
    begun = time.monotonic()
    await runtime.stop_container(started.id, grace_period=grace)
    elapsed = time.monotonic() - begun
    assert grace * 0.9 <= elapsed < grace + 10

    info = await find(runtime, started.id)
    assert info is not None and info.state is ContainerState.EXITED
    assert info.exit_code == 137  # 128 + SIGKILL

    # Stopping again, or stopping an unknown id, is no error.
    await runtime.stop_container(started.id, grace_period=0)
    await runtime.stop_container(started.id + "0", grace_period=0)


async def test_env_working_dir_and_hostname(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    script = 'echo "$GREETING"; pwd; echo "$HOSTNAME"'
    bound = pod(
        container(
            "env",
            ["sh", "-c", script],
            image=runtime_harness.image,
            env={"GREETING": "hello world"},
            working_dir="/tmp",
        ),
        pod_id="envpod",
    )
    _, [started] = await run_pod(runtime, bound)
    await wait_exited(runtime, started.id)
    logs = await runtime.container_logs(started.id)
    assert logs.splitlines() == [b"hello world", b"/tmp", b"envpod"]


async def test_a_port_the_container_listens_on_is_reachable(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    port = free_port()
    bound = pod(
        container(
            "web",
            runtime_harness.listen_command(port),
            image=runtime_harness.image,
            ports=[Port(container_port=port)],
        )
    )
    sandbox, [started] = await run_pod(runtime, bound)
    [mapping] = [m for m in sandbox.ports if m.container_port == port]

    async def answer() -> bytes | None:
        info = await find(runtime, started.id)
        assert info is not None and info.state is ContainerState.RUNNING, info
        try:
            stream = await trio.open_tcp_stream(mapping.host_ip, mapping.host_port)
        except OSError:
            return None
        async with stream:
            await stream.send_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            reply = b""
            with trio.move_on_after(5):
                while chunk := await stream.receive_some():
                    reply += chunk
            return reply or None

    reply = await wait_until(answer, f"{mapping.host_ip}:{mapping.host_port} to answer")
    assert reply.startswith(b"HTTP/1."), reply[:200]


async def test_a_new_instance_adopts_running_containers(
    runtime_harness: RuntimeHarness,
) -> None:
    first = runtime_harness.open()
    bound = pod(container("keep", SLEEPER, image=runtime_harness.image))
    _, [started] = await run_pod(first, bound)
    await first.aclose()

    second = runtime_harness.open()
    adopted = await find(second, started.id)
    assert adopted is not None
    assert adopted.state is ContainerState.RUNNING
    assert (adopted.name, adopted.spec_hash, adopted.pod_uid) == ("keep", "keep-hash", bound.uid)
    assert adopted.started_at == pytest.approx(started.started_at, abs=1)
    assert [s.pod_uid for s in await second.list_sandboxes()] == [bound.uid]

    await second.stop_container(started.id, grace_period=5)
    info = await find(second, started.id)
    assert info is not None and info.state is ContainerState.EXITED


async def test_stats_of_a_busy_container(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    image = runtime_harness.image
    bound = pod(
        container("busy", ["sh", "-c", "while :; do :; done"], image=image),
        container("done", ["sh", "-c", "exit 0"], image=image),
    )
    _, [busy, done] = await run_pod(runtime, bound)

    async def burning() -> bool:
        stats = await runtime.container_stats(busy.id)
        return stats.cpu_usage_ns > 0 and stats.memory_usage_bytes > 0

    await wait_until(burning, "CPU time and memory to show")
    first = await runtime.container_stats(busy.id)
    assert first.timestamp > 0

    await wait_exited(runtime, done.id)
    with pytest.raises(ContainerError) as err:
        await runtime.container_stats(done.id)
    assert err.value.reason == ContainerReason.NOT_RUNNING


async def test_remove_container(runtime: Runtime, runtime_harness: RuntimeHarness) -> None:
    bound = pod(container("main", SLEEPER, image=runtime_harness.image))
    _, [started] = await run_pod(runtime, bound)

    with pytest.raises(ContainerError) as err:
        await runtime.remove_container(started.id)
    assert err.value.reason == ContainerReason.RUNNING

    await runtime.stop_container(started.id, grace_period=0)
    await runtime.remove_container(started.id)
    assert await find(runtime, started.id) is None
    with pytest.raises(ContainerError) as err:
        await runtime.container_logs(started.id)
    assert err.value.reason == ContainerReason.NOT_FOUND
    await runtime.remove_container(started.id)  # unknown now: no error


async def test_a_missing_executable_is_a_clear_error(
    runtime: Runtime, runtime_harness: RuntimeHarness
) -> None:
    program = "kubecore-no-such-program"
    bound = pod(container("broken", [program, "--flag"], image=runtime_harness.image))
    sandbox = await runtime.run_sandbox(bound, full_name(bound))
    with pytest.raises(ContainerError) as err:
        await runtime.start_container(
            bound, full_name(bound), sandbox, bound.spec.containers[0], "broken-hash"
        )
    assert err.value.reason == ContainerReason.CANNOT_RUN
    assert program in str(err.value)

    [info] = [c for c in await runtime.list_containers() if c.pod_uid == bound.uid]
    assert info.state is ContainerState.EXITED
    assert info.name == "broken" and info.spec_hash == "broken-hash"
    assert info.reason == ContainerReason.CANNOT_RUN and program in info.message
    assert info.exit_code != 0


async def test_exec_in_container(runtime: Runtime, runtime_harness: RuntimeHarness) -> None:
    image = runtime_harness.image
    bound = pod(
        container("main", SLEEPER, image=image, env={"GREETING": "hi"}, working_dir="/tmp"),
        container("gone", ["sh", "-c", "exit 0"], image=image),
    )
    _, [main, gone] = await run_pod(runtime, bound)

    code, output = await runtime.exec_in_container(
        main.id, ["sh", "-c", 'echo "$GREETING"; pwd; sleep 0.2; echo oops >&2; exit 4'],
        timeout=10,
    )
    assert code == 4
    assert output.splitlines() == [b"hi", b"/tmp", b"oops"]

    begun = time.monotonic()
    with pytest.raises(ContainerError) as err:
        await runtime.exec_in_container(main.id, ["sleep", "30"], timeout=0.3)
    assert err.value.reason == ContainerReason.EXEC_TIMEOUT
    assert time.monotonic() - begun < 10

    await wait_exited(runtime, gone.id)
    with pytest.raises(ContainerError) as err:
        await runtime.exec_in_container(gone.id, ["true"], timeout=5)
    assert err.value.reason == ContainerReason.NOT_RUNNING
    with pytest.raises(ContainerError) as err:
        await runtime.exec_in_container(main.id + "0", ["true"], timeout=5)
    assert err.value.reason == ContainerReason.NOT_FOUND

    info = await find(runtime, main.id)
    assert info is not None and info.state is ContainerState.RUNNING
