"""Merger, hashing, backoff and naming with plain objects (no runtime, no processes)."""

from __future__ import annotations

import structlog

from kubecore.api import (
    Cause,
    EnvVar,
    InvalidObject,
    RestartPolicy,
    RestartPolicyNever,
    RestartPolicyOnFailure,
)
from kubecore.kubelet.backoff import Backoff
from kubecore.kubelet.hashing import container_hash
from kubecore.kubelet.merger import Merger
from kubecore.kubelet.naming import SOURCE_ANNOTATION, full_name, source_of
from kubecore.kubelet.sources import Rejected, Snapshot
from kubecore.kubelet.sync import restart_allowed
from kubecore.runtime import ContainerInfo, ContainerState
from tests.kubelet.helpers import container, pod


def test_hash_is_stable_and_covers_every_field() -> None:
    base = container(command=["sleep", "1"])
    assert container_hash(base) == container_hash(container(command=["sleep", "1"]))
    # A default written out changes nothing; any real change does.
    assert container_hash(base) == container_hash(
        container(command=["sleep", "1"], image_pull_policy="PullIfNotPresent"))
    assert container_hash(base) != container_hash(container(command=["sleep", "2"]))
    assert container_hash(base) != container_hash(
        container(command=["sleep", "1"], env=[EnvVar(name="A", value="1")]))
    assert container_hash(base) != container_hash(container(command=["sleep", "1"], cpu=100))


def test_naming() -> None:
    p = pod("web")
    assert full_name(p, "file") == "web.default.file"
    assert source_of("a.b.ns.file") == "file"


def test_merger_replaces_per_source_and_defaults_namespace() -> None:
    merger = Merger()
    a = merger.register("file")
    b = merger.register("http")
    merger.update(a, Snapshot([pod("one"), pod("two")]))
    state = merger.update(b, Snapshot([pod("three")]))
    assert list(state.pods) == ["one.default.file", "two.default.file", "three.default.http"]
    assert state.reported == {"file", "http"}
    one = state.pods["one.default.file"].pod
    assert one.namespace == "default"
    assert one.annotations[SOURCE_ANNOTATION] == "file"
    state = merger.update(a, Snapshot([pod("two")]))
    assert list(state.pods) == ["two.default.file", "three.default.http"]
    assert merger.desired.value is state and merger.desired.version >= 3


def test_merger_drops_invalid_pods_with_one_clear_line() -> None:
    merger = Merger()
    key = merger.register("file")
    bad_id = pod("Not_A_Subdomain")
    bad_image = pod("noimage", container(image=""))
    with structlog.testing.capture_logs() as logs:
        state = merger.update(key, Snapshot(
            [pod("good"), bad_id, bad_image],
            rejected=[Rejected("/etc/x.yaml", InvalidObject(
                "ContainerManifest", "", [Cause("FieldValueInvalid", "bad", "containers[0]")]))],
        ))
    assert list(state.pods) == ["good.default.file"]
    rejected = [line for line in logs if line["event"] == "pod rejected"]
    assert len(rejected) == 3
    assert {line["source"] for line in rejected} == {"file"}
    assert {line["field"] for line in rejected} == {"id", "spec.containers[0].image",
                                                    "containers[0]"}
    assert any(line["origin"] == "/etc/x.yaml" for line in rejected)
    # The same snapshot again logs nothing new.
    with structlog.testing.capture_logs() as again:
        merger.update(key, Snapshot([pod("good"), bad_id, bad_image]))
    assert not [line for line in again if line["event"] == "pod rejected"]


def test_duplicates_first_source_wins() -> None:
    merger = Merger()
    first = merger.register("http")
    second = merger.register("http")
    merger.update(first, Snapshot([pod("web", container(command=["a"]))]))
    with structlog.testing.capture_logs() as logs:
        state = merger.update(second, Snapshot([pod("web", container(command=["b"]))]))
    assert state.pods["web.default.http"].pod.spec.containers[0].command == ["a"]
    assert any(line["event"].startswith("pod ignored") for line in logs)
    # Within one snapshot too; and two pods may not share a uid.
    state = merger.update(first, Snapshot([pod("x", uid="u"), pod("x", uid="v"),
                                           pod("y", uid="u")]))
    assert [p.uid for p in state.pods.values()] == ["u", "uid-web"]


def test_unreported_sources_are_listed() -> None:
    merger = Merger()
    merger.register("file")
    key = merger.register("etcd")
    state = merger.update(key, Snapshot([]))
    assert state.sources == {"file", "etcd"} and state.reported == {"etcd"}


def test_backoff_doubles_caps_and_resets() -> None:
    now = [1000.0]
    backoff = Backoff(1.0, 4.0, 60.0, clock=lambda: now[0])
    assert backoff.not_before("k", "d1", 999.0, 1000.0) == 1001.0
    assert backoff.not_before("k", "d1", 999.0, 1000.0) == 1001.0  # same death: same time
    assert backoff.not_before("k", "d2", 1001.0, 1002.0) == 1004.0
    assert backoff.not_before("k", "d3", 1004.0, 1005.0) == 1009.0
    assert backoff.not_before("k", "d4", 1009.0, 1010.0) == 1014.0  # capped at 4
    assert backoff.not_before("k", "d5", 1010.0, 1100.0) == 1101.0  # ran 90 s: reset
    backoff.forget("k")
    assert backoff.not_before("k", "d6", None, None) == 1001.0


def _dead(code: int | None) -> ContainerInfo:
    return ContainerInfo(id="c", pod_full_name="p", pod_uid="u", name="main", spec_hash="h",
                         image="i", state=ContainerState.EXITED, exit_code=code)


def test_restart_policies() -> None:
    always = pod("a")
    never = pod("n", restart=RestartPolicy(never=RestartPolicyNever()))
    on_failure = pod("f", restart=RestartPolicy(on_failure=RestartPolicyOnFailure()))
    assert restart_allowed(always, _dead(0))
    assert not restart_allowed(never, _dead(1))
    assert not restart_allowed(on_failure, _dead(0))
    assert restart_allowed(on_failure, _dead(3))
    assert restart_allowed(on_failure, _dead(None))
