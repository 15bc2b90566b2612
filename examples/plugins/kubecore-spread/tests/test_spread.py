"""SpreadByPodCount on NodeInfo objects, and the plugin's hooks and [spread] section."""

from __future__ import annotations

import random
from pathlib import Path

import kubecore_spread
import pytest
from kubecore_spread import PRIORITY_NAME, SpreadByPodCount, SpreadConfig
from pydantic import ValidationError

from kubecore.api import API_VERSION, Container, ContainerManifest, Minion, Pod, PodState
from kubecore.config import ConfigSection, KernelConfig, Settings
from kubecore.context import Context
from kubecore.plugins import new_manager
from kubecore.scheduler import NodeInfo, select_lowest


def pod(name: str, *, cpu: int = 0) -> Pod:
    """A one-container pod requesting ``cpu`` milli-cores."""
    manifest = ContainerManifest(version="v1beta1", id=name,
                                 containers=[Container(name="c", image="busybox", cpu=cpu)])
    return Pod(api_version=API_VERSION, id=name, namespace="default",
               desired_state=PodState(manifest=manifest))


def node(name: str, pods: int) -> NodeInfo:
    """Minion ``name`` holding ``pods`` pods named after it."""
    minion = Minion(api_version=API_VERSION, id=name)
    return NodeInfo.of(minion, [pod(f"{name}-{i}") for i in range(pods)])


def context(weight: int | None = None) -> Context:
    """A master context whose hooks are those of kubecore_spread only."""
    manager = new_manager()
    manager.register(kubecore_spread, name="spread")
    spread = SpreadConfig() if weight is None else SpreadConfig(weight=weight)
    settings = Settings({"kubecore": KernelConfig(role="master", data_dir=Path("unused")),
                         "spread": spread})
    return Context(settings=settings, hook=manager.hook)


def test_score_is_pod_count_times_weight() -> None:
    nodes = [node("a", 3), node("b", 0), node("c", 1)]
    assert SpreadByPodCount(7)(pod("new"), nodes) == {"a": 21, "b": 0, "c": 7}


def test_default_weight_is_ten() -> None:
    assert SpreadByPodCount()(pod("new"), [node("a", 2)]) == {"a": 20}


def test_the_node_with_fewest_pods_wins() -> None:
    nodes = [node("a", 4), node("b", 2), node("c", 3)]
    scores = SpreadByPodCount()(pod("new"), nodes)
    assert select_lowest(scores, random.Random(0)) == "b"


def test_resources_do_not_count_only_pods() -> None:
    busy = NodeInfo.of(Minion(api_version=API_VERSION, id="busy"), [pod("big", cpu=4000)])
    idle = node("idle", 2)
    assert SpreadByPodCount(1)(pod("new"), [busy, idle]) == {"busy": 1, "idle": 2}


def test_nodes_are_not_changed_and_the_new_pod_is_not_counted() -> None:
    nodes = [node("a", 1), node("b", 0)]
    before = [n.pods for n in nodes]
    assert SpreadByPodCount(5)(pod("new"), nodes) == {"a": 5, "b": 0}
    assert [n.pods for n in nodes] == before


def test_no_nodes_no_scores() -> None:
    assert SpreadByPodCount()(pod("new"), []) == {}


def test_weight_zero_scores_everything_zero() -> None:
    assert SpreadByPodCount(0)(pod("new"), [node("a", 9), node("b", 1)]) == {"a": 0, "b": 0}


def test_negative_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SpreadByPodCount(-1)


def test_config_defaults_and_validation() -> None:
    assert SpreadConfig().weight == 10
    assert SpreadConfig(weight=0).weight == 0
    with pytest.raises(ValidationError):
        SpreadConfig(weight=-1)
    with pytest.raises(ValidationError):
        SpreadConfig.model_validate({"weight": 1, "unknown": 2})


def test_hook_declares_the_spread_section() -> None:
    sections = context().hook.kubecore_config_section()
    assert sections == [ConfigSection("spread", SpreadConfig, sections[0].doc)]
    assert sections[0].doc


def test_hook_gives_the_priority_with_the_configured_weight() -> None:
    ctx = context(weight=3)
    (answer,) = ctx.hook.kubecore_scheduler_priorities(ctx=ctx)
    assert set(answer) == {PRIORITY_NAME}
    assert answer[PRIORITY_NAME] == SpreadByPodCount(3)
    assert answer[PRIORITY_NAME](pod("new"), [node("a", 2), node("b", 1)]) == {"a": 6, "b": 3}


def test_hook_uses_the_default_weight() -> None:
    ctx = context()
    (answer,) = ctx.hook.kubecore_scheduler_priorities(ctx=ctx)
    assert answer[PRIORITY_NAME] == SpreadByPodCount(10)
