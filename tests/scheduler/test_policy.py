"""The v0.5 policy of the scheduler_priority plugin, and the NodeInfo aggregates it
reads: each predicate, the least-requested priority, and random choice among ties."""

from __future__ import annotations

import math
import random
from collections import Counter

from kubecore_scheduler_priority import (
    kubecore_scheduler_select_host,
    least_requested_priority,
    match_node_selector,
    no_disk_conflict,
    pod_fits_ports,
    pod_fits_resources,
)

from kubecore.api import GCEPersistentDisk, Pod, Volume, VolumeSource
from kubecore.scheduler import (
    NodeInfo,
    ScoreTable,
    parse_capacity,
    parse_cpu_capacity,
    pod_key,
    select_lowest,
)
from tests.scheduler.conftest import minion, pod

GiB = 2**30


def test_node_info_aggregates_follow_adds_and_removes() -> None:
    a = pod("a", cpu=100, memory=GiB, host_ports=[80, 443])
    b = pod("b", cpu=50, host_ports=[80])  # a port counted twice must survive one removal
    node = NodeInfo.of(minion("n"), [a, b])
    assert (node.requested_cpu, node.requested_memory) == (150, GiB)
    assert node.used_host_ports == {80, 443} and node.pod_count == 2
    node.add_pod(pod("b", cpu=70))  # a new version of b replaces the old one
    assert node.requested_cpu == 170 and node.used_host_ports == {80, 443}
    assert node.remove_pod(pod_key(a)) is a
    assert (node.requested_cpu, node.requested_memory) == (70, 0)
    assert node.used_host_ports == set()
    assert node.remove_pod(("default", "missing")) is None


def test_capacity_values_may_be_int_or_string() -> None:
    assert parse_capacity(3 * GiB) == 3 * GiB
    assert parse_capacity(str(3 * GiB)) == 3 * GiB
    assert parse_capacity("3Gi") == 3 * GiB and parse_capacity("2k") == 2000
    assert parse_capacity("lots") == 0 and parse_capacity(None) == 0
    assert parse_cpu_capacity(4) == 4000 and parse_cpu_capacity("4") == 4000
    assert parse_cpu_capacity("0.5") == 500 and parse_cpu_capacity("250m") == 250
    assert parse_cpu_capacity("x") == 0
    assert NodeInfo(minion("n", cpu="2", memory="1Gi")).capacity_cpu == 2000


def test_pod_fits_ports() -> None:
    node = NodeInfo.of(minion("n"), [pod("web", host_ports=[8080])])
    assert not pod_fits_ports(pod("p", host_ports=[8080]), node)
    assert not pod_fits_ports(pod("p", host_ports=[9090, 8080]), node)
    assert pod_fits_ports(pod("p", host_ports=[9090]), node)
    assert pod_fits_ports(pod("p"), node)  # hostPort 0 asks for nothing


def test_pod_fits_resources() -> None:
    node = NodeInfo.of(minion("n", cpu=1, memory=GiB), [pod("x", cpu=600, memory=GiB // 2)])
    assert pod_fits_resources(pod("p", cpu=400, memory=GiB // 2), node)  # exactly full
    assert not pod_fits_resources(pod("p", cpu=401), node)
    assert not pod_fits_resources(pod("p", memory=GiB // 2 + 1), node)
    # Nothing requested: always fits, even on a node already over capacity.
    full = NodeInfo.of(minion("n", cpu=1, memory=1), [pod("x", cpu=5000, memory=5)])
    assert pod_fits_resources(pod("p"), full)
    # Capacity 0 (or absent) is unlimited, per resource.
    assert pod_fits_resources(pod("p", cpu=10**6, memory=10**12), NodeInfo(minion("n")))
    cpu_only = NodeInfo(minion("n", cpu=1))
    assert pod_fits_resources(pod("p", cpu=1000, memory=10**12), cpu_only)
    assert not pod_fits_resources(pod("p", cpu=1001), cpu_only)
    # String capacities read the same as numbers.
    assert not pod_fits_resources(pod("p", cpu=1001), NodeInfo(minion("n", cpu="1")))


def with_disk(p: Pod, pd_name: str) -> Pod:
    """``p`` mounting GCE persistent disk ``pd_name``."""
    source = VolumeSource(persistent_disk=GCEPersistentDisk(pd_name=pd_name, read_only=True))
    p.desired_state.manifest.volumes.append(Volume(name="data", source=source))
    return p


def test_no_disk_conflict() -> None:
    holder = with_disk(pod("holder"), "disk-1")
    node = NodeInfo.of(minion("n"), [holder])
    assert node.used_disks == {"disk-1"}
    assert not no_disk_conflict(with_disk(pod("p"), "disk-1"), node)
    assert no_disk_conflict(with_disk(pod("p"), "disk-2"), node)
    assert no_disk_conflict(pod("p"), node)
    node.remove_pod(pod_key(holder))
    assert no_disk_conflict(with_disk(pod("p"), "disk-1"), node)


def test_match_node_selector() -> None:
    node = NodeInfo(minion("n", labels={"disk": "ssd", "zone": "a"}))
    assert match_node_selector(pod("p"), node)
    assert match_node_selector(pod("p", node_selector={"disk": "ssd"}), node)
    assert match_node_selector(pod("p", node_selector={"disk": "ssd", "zone": "a"}), node)
    assert not match_node_selector(pod("p", node_selector={"disk": "hdd"}), node)
    assert not match_node_selector(pod("p", node_selector={"gpu": "yes"}), node)


def test_least_requested_priority_is_lower_for_the_emptier_node() -> None:
    busy = NodeInfo.of(minion("busy", cpu=1, memory=GiB), [pod("x", cpu=500, memory=GiB)])
    idle = NodeInfo.of(minion("idle", cpu=1, memory=GiB), [pod("y", cpu=100)])
    unlimited = NodeInfo.of(minion("unlimited"), [pod("z", cpu=10**6, memory=GiB)])
    scores = least_requested_priority(pod("p", cpu=100), [busy, idle, unlimited])
    # busy: (50 + 100) / 2; idle: (10 + 0) / 2; capacity 0 counts 0 %.
    assert scores == {"busy": 75, "idle": 5, "unlimited": 0}
    # Integer percentages, as v0.5: 1/3 of the cpu is 33 %, halved to 16.
    third = NodeInfo.of(minion("t", cpu=3), [pod("x", cpu=1000)])
    assert least_requested_priority(pod("p"), [third]) == {"t": 16}


def test_lowest_score_wins() -> None:
    rng = random.Random(7)
    for _ in range(50):
        assert kubecore_scheduler_select_host(
            pod("p"), {"a": 30, "b": 2, "c": 9}, rng) == "b"
    assert select_lowest({"only": 99}, rng) == "only"


def test_ties_are_uniformly_random() -> None:
    """3000 draws over 3 tied hosts (a 4th scores worse): chi-square, 2 degrees of
    freedom, must not reject uniformity at p = 0.001."""
    rng = random.Random(20141117)
    scores = {"node-c": 1, "node-a": 1, "node-b": 1, "node-d": 2}
    draws = 3000
    counts = Counter(kubecore_scheduler_select_host(pod("p"), scores, rng)
                     for _ in range(draws))
    assert set(counts) == {"node-a", "node-b", "node-c"}
    expected = draws / 3
    chi2 = sum((counts[h] - expected) ** 2 / expected for h in ("node-a", "node-b", "node-c"))
    p_value = math.exp(-chi2 / 2)  # the chi-square survival function for 2 dof
    assert p_value > 0.001, (counts, chi2)


def test_seeded_choice_ignores_mapping_order() -> None:
    forward = {"a": 0, "b": 0, "c": 0}
    backward = dict(reversed(forward.items()))
    one, two = random.Random(5), random.Random(5)
    assert ([select_lowest(forward, one) for _ in range(20)]
            == [select_lowest(backward, two) for _ in range(20)])


def test_a_score_table_selects_as_a_plain_mapping_does() -> None:
    """Random sets, changes and removals: the table's lowest hosts and seeded choices are
    those of the same scores in a dict."""
    ops = random.Random(11)
    table, plain = ScoreTable(), {}
    one, two = random.Random(3), random.Random(3)
    for step in range(3000):
        host = f"node-{ops.randrange(60)}"
        if ops.random() < 0.2 and host in plain:
            del table[host], plain[host]
        else:
            table[host] = plain[host] = ops.randrange(8)
        assert dict(table) == plain
        if plain:
            best = min(plain.values())
            assert list(table.lowest()) == sorted(h for h, v in plain.items() if v == best)
            assert select_lowest(table, one) == select_lowest(plain, two), step
    assert len(table) == len(plain) and ScoreTable().lowest() == ()


class CountingNode(NodeInfo):
    """A node that counts how often its pod list is read."""

    reads = 0

    @property
    def pods(self) -> list[Pod]:
        CountingNode.reads += 1
        return super().pods


def test_evaluation_does_not_scan_the_node() -> None:
    """Predicates and the priority read aggregates, never the node's pod list."""
    many = CountingNode.of(minion("n", cpu=1000, memory=1000 * GiB),
                           [pod(f"x{i}", cpu=1, memory=1, host_ports=[10000 + i])
                            for i in range(2000)])
    CountingNode.reads = 0
    candidate = pod("p", cpu=1, memory=1, host_ports=[9])
    assert pod_fits_ports(candidate, many)
    assert pod_fits_resources(candidate, many)
    assert no_disk_conflict(candidate, many)
    assert match_node_selector(candidate, many)
    assert least_requested_priority(candidate, [many]) == {"n": 0}
    assert CountingNode.reads == 0
