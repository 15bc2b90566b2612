"""runtime_exec beyond the shared runtime contract: hooks and configuration, its on-disk
layout, the host-process specifics (environment, sessions, ports) and adoption of
processes started by another kubelet process."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kubecore_runtime_exec
import pytest
import trio
from kubecore_runtime_exec import ExecRuntime, ExecRuntimeConfig, procfs
from kubecore_runtime_exec.runtime import (
    _SPAWNED,
    exit_description,
    parse_container_id,
    read_tail,
)

from kubecore import hookimpl
from kubecore.api import Port
from kubecore.config import KERNEL_SECTION, ConfigError, resolve
from kubecore.context import Context
from kubecore.errors import StartupError
from kubecore.plugins import installed_plugins, new_manager
from kubecore.runtime import ContainerError, ContainerReason, ContainerState, Runtime
from tests.contract.runtime_fixtures import (
    container,
    find,
    full_name,
    pod,
    run_pod,
    wait_exited,
    wait_until,
)

IMAGE = "busybox"
SLEEPER = ["sleep", "120"]  # outlives any test, not a killed test run by much
WAIT_FOR_STOP_FILE = "while [ ! -e stop ]; do sleep 0.02; done"

Opener = Callable[..., ExecRuntime]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "exec"


@pytest.fixture
async def open_runtime(root: Path) -> AsyncIterator[Opener]:
    """Opens ExecRuntimes on ``root``; at the end closes them and removes every pod."""
    made: list[ExecRuntime] = []

    def open_(**options: Any) -> ExecRuntime:
        runtime = ExecRuntime(root, **options)
        made.append(runtime)
        return runtime

    try:
        yield open_
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(30):
            for runtime in made:
                await runtime.aclose()
            sweeper = ExecRuntime(root)
            try:
                for sandbox in await sweeper.list_sandboxes():
                    await sweeper.remove_sandbox(sandbox.id)
            finally:
                await sweeper.aclose()


def context(tmp_path: Path, role: str = "all", **section: Any) -> Context:
    sections = [KERNEL_SECTION, kubecore_runtime_exec.kubecore_config_section()]
    raw = {"kubecore": {"data_dir": str(tmp_path), "role": role}, "runtime_exec": section}
    return Context(settings=resolve(raw, sections), hook=None)


def pid_gone(pid: int) -> bool:
    stat = procfs.read_stat(pid)
    return stat is None or stat.dead


# -- plugin, hooks, configuration -------------------------------------------------------


def test_installed_as_a_plugin_with_its_hooks() -> None:
    [info] = [p for p in installed_plugins() if p.name == "runtime_exec"]
    assert info.error is None
    assert (info.distribution, info.version) == ("kubecore-runtime-exec", "0.1.0")
    assert info.hooks == ["kubecore_config_section", "kubecore_runtime"]


async def test_the_hook_gives_a_runtime_on_a_node_only(tmp_path: Path) -> None:
    runtime = kubecore_runtime_exec.kubecore_runtime(context(tmp_path))
    assert isinstance(runtime, ExecRuntime) and isinstance(runtime, Runtime)
    try:
        assert runtime.root == tmp_path / "exec"
        assert runtime.name == "exec"
    finally:
        await runtime.aclose()
    assert kubecore_runtime_exec.kubecore_runtime(context(tmp_path, role="master")) is None
    node = kubecore_runtime_exec.kubecore_runtime(context(tmp_path, role="node"))
    assert node is not None
    await node.aclose()


async def test_a_runtime_that_answers_wins_over_exec(tmp_path: Path) -> None:
    class Docker:
        def __init__(self, answer: object) -> None:
            self.answer = answer

        @hookimpl
        def kubecore_runtime(self, ctx: Context) -> object:
            return self.answer

    sentinel = object()
    for answer, expected in ((sentinel, sentinel), (None, ExecRuntime)):
        manager = new_manager()
        manager.register(Docker(answer), name="docker")
        # Registered last, so asked first but for trylast.
        manager.register(kubecore_runtime_exec, name="runtime_exec")
        got = manager.hook.kubecore_runtime(ctx=context(tmp_path))
        if expected is ExecRuntime:
            assert isinstance(got, ExecRuntime)
            await got.aclose()
        else:
            assert got is expected


def test_config_section(tmp_path: Path) -> None:
    ctx = context(tmp_path, root="/srv/pods", inherit_env=["LANG"], path="/bin")
    cfg = ctx.config(ExecRuntimeConfig)
    assert (cfg.root, cfg.inherit_env, cfg.path) == (Path("/srv/pods"), ["LANG"], "/bin")
    with pytest.raises(ConfigError, match=r"runtime_exec\.rooot: unknown key"):
        context(tmp_path, rooot="/x")


async def test_the_root_serves_one_runtime_at_a_time(root: Path, open_runtime: Opener) -> None:
    first = open_runtime()
    with pytest.raises(StartupError, match=f"{os.getpid()}.*own \\[runtime_exec\\] root"):
        ExecRuntime(root)
    await first.aclose()
    await first.aclose()  # idempotent
    open_runtime()


# -- layout, environment, ports ---------------------------------------------------------


async def test_layout_and_state_file(root: Path, open_runtime: Opener) -> None:
    runtime = open_runtime()
    bound = pod(container("main", ["sh", "-c", "echo hi; exec sleep 300"], image=IMAGE))
    _, [started] = await run_pod(runtime, bound)
    assert started.id == f"{bound.uid}_main_0"
    assert parse_container_id(started.id) == (bound.uid, "main", 0)

    cdir = root / "pods" / bound.uid / "main"

    async def logged() -> bool:
        return (cdir / "0.log").read_bytes() == b"hi\n"

    await wait_until(logged, "the log file")
    state = json.loads((cdir / "0.json").read_text())
    stat = procfs.read_stat(state["pid"])
    assert stat is not None and stat.start_ticks == state["pid_start_ticks"]
    assert stat.session == stat.pgrp == state["pid"]  # leads its own session and group
    assert state["boot_id"] == procfs.boot_id()
    assert (state["pod_full_name"], state["pod_uid"], state["name"]) == (
        full_name(bound),
        bound.uid,
        "main",
    )
    assert (state["spec_hash"], state["image"], state["state"]) == ("main-hash", IMAGE, "running")
    sandbox = json.loads((root / "pods" / bound.uid / "sandbox.json").read_text())
    assert sandbox["ready"] and sandbox["pod_full_name"] == full_name(bound)


async def test_port_map(open_runtime: Opener) -> None:
    runtime = open_runtime()
    bound = pod(
        container(
            "a",
            SLEEPER,
            image=IMAGE,
            ports=[Port(container_port=8080), Port(container_port=8081, host_port=9091)],
        ),
        container("b", SLEEPER, image=IMAGE, ports=[Port(container_port=53, protocol="udp")]),
    )
    sandbox = await runtime.run_sandbox(bound, full_name(bound))
    assert [(m.container_port, m.host_port, m.host_ip, m.protocol) for m in sandbox.ports] == [
        (8080, 8080, "127.0.0.1", "TCP"),
        (8081, 8081, "127.0.0.1", "TCP"),  # hostPort: nothing forwards to it
        (53, 53, "127.0.0.1", "UDP"),
    ]
    assert sandbox.ip == "127.0.0.1"
    again = await runtime.run_sandbox(bound, full_name(bound))
    assert (again.id, again.created_at) == (sandbox.id, sandbox.created_at)


async def test_default_environment_and_working_dir(
    root: Path, open_runtime: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECORE_TEST_KEPT", "kept")
    monkeypatch.setenv("KUBECORE_TEST_SECRET", "leaked")
    runtime = open_runtime(path="/usr/bin:/bin", inherit_env=["KUBECORE_TEST_KEPT"])
    script = (
        'pwd; echo "$HOME"; echo "$PATH"; echo "$HOSTNAME"; echo "$KUBECORE_TEST_KEPT";'
        ' echo "${KUBECORE_TEST_SECRET-unset}"; echo "$OVERRIDE"'
    )
    bound = pod(
        container("env", ["sh", "-c", script], image=IMAGE, env={"OVERRIDE": "mine"}),
        pod_id="web",
    )
    _, [started] = await run_pod(runtime, bound)
    await wait_exited(runtime, started.id)
    cdir = str(root / "pods" / bound.uid / "env")
    lines = (await runtime.container_logs(started.id)).decode().splitlines()
    assert lines == [cdir, cdir, "/usr/bin:/bin", "web", "kept", "unset", "mine"]


async def test_commands_that_cannot_start(open_runtime: Opener, tmp_path: Path) -> None:
    runtime = open_runtime()
    missing_dir = str(tmp_path / "nowhere")
    bound = pod(
        container("nocommand", [], image=IMAGE),
        container("baddir", ["true"], image=IMAGE, working_dir=missing_dir),
        container("notexec", [str(tmp_path)], image=IMAGE),
    )
    sandbox = await runtime.run_sandbox(bound, full_name(bound))
    expected = {
        "nocommand": "has no command",
        "baddir": f"working directory {missing_dir!r} does not exist",
        "notexec": str(tmp_path),
    }
    for spec in bound.spec.containers:
        with pytest.raises(ContainerError) as err:
            await runtime.start_container(bound, full_name(bound), sandbox, spec, "h")
        assert err.value.reason == ContainerReason.CANNOT_RUN
        assert expected[spec.name] in str(err.value)
    infos = {c.name: c for c in await runtime.list_containers()}
    for name, text in expected.items():
        assert infos[name].state is ContainerState.EXITED
        assert text in infos[name].message


async def test_concurrent_starts_get_their_own_instances(open_runtime: Opener) -> None:
    runtime = open_runtime()
    bound = pod(container("main", ["sh", "-c", "echo $$"], image=IMAGE))
    sandbox = await runtime.run_sandbox(bound, full_name(bound))
    ids: list[str] = []

    async def start() -> None:
        info = await runtime.start_container(
            bound, full_name(bound), sandbox, bound.spec.containers[0], "h"
        )
        ids.append(info.id)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(start)
    assert sorted(ids) == sorted(f"{bound.uid}_main_{n}" for n in range(8))
    outputs = {await runtime.container_logs((await wait_exited(runtime, i)).id) for i in ids}
    assert len(outputs) == 8  # eight processes, eight logs


async def test_a_pod_uid_that_cannot_name_a_directory(open_runtime: Opener) -> None:
    runtime = open_runtime()
    bound = pod(container("main", SLEEPER, image=IMAGE))
    bound.uid = "../escape"
    with pytest.raises(ContainerError) as err:
        await runtime.run_sandbox(bound, full_name(bound))
    assert err.value.reason == ContainerReason.INVALID


async def test_processes_left_behind_die_with_the_main_process(open_runtime: Opener) -> None:
    runtime = open_runtime()
    script = "sleep 300 & echo $!; exit 0"
    bound = pod(container("main", ["sh", "-c", script], image=IMAGE))
    _, [started] = await run_pod(runtime, bound)
    await wait_exited(runtime, started.id)
    child = int(await runtime.container_logs(started.id))

    async def gone() -> bool:
        return pid_gone(child)

    await wait_until(gone, f"the background child {child} to be killed")


async def test_stats_cover_the_whole_session(open_runtime: Opener) -> None:
    runtime = open_runtime()
    script = "sleep 300 & sleep 300 & echo started; wait"
    bound = pod(container("main", ["sh", "-c", script], image=IMAGE))
    _, [started] = await run_pod(runtime, bound)

    async def three() -> bool:
        stats = await runtime.container_stats(started.id)
        return stats.extra.get("processes") == 3

    await wait_until(three, "three processes in the container")


async def test_exec_of_a_missing_program(open_runtime: Opener) -> None:
    runtime = open_runtime()
    bound = pod(container("main", SLEEPER, image=IMAGE))
    _, [started] = await run_pod(runtime, bound)
    with pytest.raises(ContainerError) as err:
        await runtime.exec_in_container(started.id, ["kubecore-no-such-probe"], timeout=5)
    assert err.value.reason == ContainerReason.EXEC_FAILED
    assert "kubecore-no-such-probe" in str(err.value)


# -- adoption ---------------------------------------------------------------------------


async def test_a_later_instance_in_the_same_process_keeps_exit_codes(
    root: Path, open_runtime: Opener
) -> None:
    first = open_runtime()
    script = f"{WAIT_FOR_STOP_FILE}; exit 5"
    bound = pod(container("main", ["sh", "-c", script], image=IMAGE))
    _, [started] = await run_pod(first, bound)
    await first.aclose()

    second = open_runtime()
    info = await find(second, started.id)
    assert info is not None and info.state is ContainerState.RUNNING
    (root / "pods" / bound.uid / "main" / "stop").touch()
    exited = await wait_exited(second, started.id)
    assert (exited.exit_code, exited.reason) == (5, ContainerReason.ERROR)


START_IN_ANOTHER_PROCESS = """
import json, sys
from pathlib import Path
import trio
from kubecore.api import BoundPod, Container, PodSpec
from kubecore_runtime_exec import ExecRuntime

async def main(root, uid, commands):
    runtime = ExecRuntime(Path(root))
    containers = [Container(name=n, image="busybox", command=c) for n, c in commands.items()]
    pod = BoundPod(id="adopted", uid=uid, namespace="default", spec=PodSpec(containers=containers))
    sandbox = await runtime.run_sandbox(pod, "adopted.default.test")
    ids = {}
    for c in containers:
        info = await runtime.start_container(pod, "adopted.default.test", sandbox, c, "h")
        ids[c.name] = (info.id, json.loads(
            (Path(root) / "pods" / uid / c.name / "0.json").read_text())["pid"])
    await runtime.aclose()
    print(json.dumps(ids))

trio.run(main, sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
"""


async def test_adopts_processes_started_by_another_kubelet_process(
    root: Path, open_runtime: Opener
) -> None:
    uid = "adopted-uid"
    commands = {
        "keep": SLEEPER,
        "quits": ["sh", "-c", f"{WAIT_FOR_STOP_FILE}; exit 5"],
        "early": ["sh", "-c", f"{WAIT_FOR_STOP_FILE}; exit 6"],
    }
    done = await trio.run_process(
        [sys.executable, "-c", START_IN_ANOTHER_PROCESS, str(root), uid, json.dumps(commands)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    started: dict[str, tuple[str, int]] = json.loads(done.stdout.splitlines()[-1])
    ids = {name: cid for name, (cid, _) in started.items()}

    # "early" ends while no runtime is open.
    (root / "pods" / uid / "early" / "stop").touch()

    async def early_gone() -> bool:
        return pid_gone(started["early"][1])

    await wait_until(early_gone, "the unwatched process to end")

    runtime = open_runtime()
    infos = {c.name: c for c in await runtime.list_containers()}
    assert {name: infos[name].id for name in commands} == ids
    assert infos["keep"].state is ContainerState.RUNNING
    assert infos["quits"].state is ContainerState.RUNNING
    early = infos["early"]
    assert early.state is ContainerState.EXITED and early.exit_code is None
    assert early.reason == ContainerReason.EXIT_CODE_UNKNOWN
    assert "no runtime watched" in early.message

    # An adopted process that ends is seen at once; its exit code cannot be known.
    (root / "pods" / uid / "quits" / "stop").touch()
    quits = await wait_exited(runtime, ids["quits"])
    assert quits.exit_code is None and quits.reason == ContainerReason.EXIT_CODE_UNKNOWN

    stats = await runtime.container_stats(ids["keep"])
    assert stats.extra["processes"] == 1
    await runtime.stop_container(ids["keep"], grace_period=5)
    keep = await find(runtime, ids["keep"])
    assert keep is not None and keep.state is ContainerState.EXITED
    assert keep.reason == ContainerReason.EXIT_CODE_UNKNOWN and "SIGTERM" in keep.message
    assert pid_gone(started["keep"][1])


async def test_a_reused_pid_is_not_taken_for_the_container(
    root: Path, open_runtime: Opener
) -> None:
    first = open_runtime()
    bound = pod(container("main", SLEEPER, image=IMAGE))
    _, [started] = await run_pod(first, bound)
    await first.aclose()

    # Make the record name another process: same pid, another start time.
    state_path = root / "pods" / bound.uid / "main" / "0.json"
    state = json.loads(state_path.read_text())
    pid, ticks = state["pid"], state["pid_start_ticks"]
    state["pid_start_ticks"] = ticks - 1
    state_path.write_text(json.dumps(state))
    proc = _SPAWNED[(pid, ticks)]
    try:
        second = open_runtime()
        info = await find(second, started.id)
        assert info is not None and info.state is ContainerState.EXITED
        assert info.reason == ContainerReason.EXIT_CODE_UNKNOWN
        await second.stop_container(started.id, grace_period=0)
        assert not pid_gone(pid)  # the process the record does not name was left alone
    finally:
        os.killpg(pid, signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await proc.wait()
        _SPAWNED.pop((pid, ticks), None)


# -- helpers ----------------------------------------------------------------------------


def test_read_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    assert read_tail(path, None) == b""
    path.write_bytes(b"a\nb\nc\n")
    assert read_tail(path, None) == b"a\nb\nc\n"
    assert read_tail(path, 2) == b"b\nc\n"
    assert read_tail(path, 10) == b"a\nb\nc\n"
    assert read_tail(path, 0) == b""
    path.write_bytes(b"a\nb\npartial")
    assert read_tail(path, 1) == b"partial"
    assert read_tail(path, 2) == b"b\npartial"
    big = b"".join(b"%d\n" % i for i in range(100_000))
    path.write_bytes(big)
    assert read_tail(path, 3) == b"99997\n99998\n99999\n"


def test_exit_description() -> None:
    assert exit_description(0) == (0, ContainerReason.COMPLETED, "")
    assert exit_description(3) == (3, ContainerReason.ERROR, "exited with code 3")
    assert exit_description(-9) == (137, ContainerReason.ERROR, "killed by SIGKILL")


def test_parse_stat_with_an_odd_command_name() -> None:
    fields = ["S", "1", "42", "42"] + ["0"] * 7 + ["5", "6", "7", "8"] + ["0"] * 4
    fields += ["12345", "0", "99"]
    stat = procfs.parse_stat(42, "42 (a) b (c)) " + " ".join(fields))
    assert (stat.state, stat.pgrp, stat.session, stat.start_ticks, stat.rss_pages) == (
        "S",
        42,
        42,
        12345,
        99,
    )
    assert stat.cpu_ns == (5 + 6 + 7 + 8) * 1_000_000_000 // procfs.CLOCK_TICKS


def test_parse_container_id() -> None:
    assert parse_container_id("a.b-c_web_12") == ("a.b-c", "web", 12)
    assert parse_container_id("uid_Web_1") is None
    assert parse_container_id("uid_web_x") is None
    assert parse_container_id("../x_web_1") is None
