"""Pod start benchmark: a kubelet on runtime_docker beside ``docker run`` by hand.

- kubecore: ``kubecore run --role node --plugins runtime_docker,source_file`` watches a
  manifest directory; a one-container pod manifest is renamed into it and the time runs
  until the daemon's ``start`` event of the pod's second container (infra, then app);
- direct: the same two containers started with the Docker SDK as a user would by hand:
  an infra container publishing the port on 127.0.0.1, then the app container joining
  its network namespace; the time runs until the daemon's ``start`` event of the app.

Both end on the daemon's own event timestamps (read from its event stream, which puts
no load on it), so neither path is measured under the other's polling.

K pods each (``--quick``: 3, full: 10), alternating; medians compared. Every container
carries the label ``kubecore.bench=podstart`` and all are removed at the end. The image
is ``kubecore/busybox:test``, built locally; nothing is pulled.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import docker

from bench import Measure

ROOT = Path(__file__).resolve().parent.parent
BENCH_LABEL = {"kubecore.bench": "podstart"}
COMMAND = ["sleep", "2147483647"]
PORT = 80


def manifest(image: str) -> str:
    main: dict[str, Any] = {"name": "main", "image": image, "command": COMMAND,
                            "imagePullPolicy": "PullNever",
                            "ports": [{"name": "http", "containerPort": PORT, "hostPort": 0}]}
    return json.dumps({"version": "v1beta1", "id": "ignored", "containers": [main]})


class StartEvents:
    """The daemon's ``start`` events of bench containers, read in a thread: container
    id -> (its labels, the event's wall-clock time in seconds)."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._stream = client.events(
            decode=True,
            filters={"type": "container", "event": "start",
                     "label": [f"{k}={v}" for k, v in BENCH_LABEL.items()]})
        self.started: dict[str, tuple[dict[str, str], float]] = {}
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                actor = event.get("Actor") or {}
                with self._cond:
                    self.started[actor.get("ID") or event.get("id", "")] = (
                        dict(actor.get("Attributes") or {}), event["timeNano"] / 1e9)
                    self._cond.notify_all()
        except Exception:  # the stream was closed
            return

    def wait(self, match: dict[str, str], count: int, timeout: float = 60.0) -> float:
        """The time of the ``count``-th start of containers whose labels include
        ``match`` (the newest of the first ``count``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                times = sorted(when for labels, when in self.started.values()
                               if match.items() <= labels.items())
                if len(times) >= count:
                    return times[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{count} containers did not start within {timeout}s")
                self._cond.wait(left)

    def wait_id(self, cid: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while cid not in self.started:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"container {cid} did not start within {timeout}s")
                self._cond.wait(left)
            return self.started[cid][1]

    def close(self) -> None:
        self._stream.close()


def kubecore_start(events: StartEvents, node: str, manifests: Path, image: str,
                   index: int, expected: int) -> float:
    """Seconds from the manifest's arrival to the start of its last container (the
    node's ``expected``-th)."""
    scratch = manifests.parent / f"pod{index}.json"
    scratch.write_text(manifest(image))
    started = time.time()
    scratch.rename(manifests / f"pod{index}.json")  # arrives whole, in one step
    return events.wait({"kubecore.node": node}, expected) - started


def direct_start(client: docker.DockerClient, events: StartEvents, image: str) -> float:
    """Seconds to start an infra container and an app container in its namespace."""
    tag = uuid.uuid4().hex[:8]
    started = time.time()
    infra = client.containers.run(
        image, COMMAND, name=f"bench-infra-{tag}", detach=True, labels=BENCH_LABEL,
        ports={f"{PORT}/tcp": ("127.0.0.1", None)})
    app = client.containers.run(
        image, COMMAND, name=f"bench-app-{tag}", detach=True, labels=BENCH_LABEL,
        network_mode=f"container:{infra.id}")
    return events.wait_id(app.id) - started


def cleanup(client: docker.DockerClient) -> None:
    for container in client.containers.list(
            all=True, filters={"label": [f"{k}={v}" for k, v in BENCH_LABEL.items()]}):
        container.remove(force=True)


def run(quick: bool) -> list[Measure]:
    sys.path.insert(0, str(ROOT))
    from tests.processes import KubecoreProcess
    from tests.services import ensure_busybox_image

    pods = 3 if quick else 10
    client = docker.from_env()
    image = ensure_busybox_image(client)
    node = f"bench-podstart-{uuid.uuid4().hex[:8]}"
    kube: list[float] = []
    direct: list[float] = []
    events = StartEvents(client)
    try:
        with tempfile.TemporaryDirectory(prefix="kubecore-bench-") as tmp:
            manifests = Path(tmp) / "manifests"
            manifests.mkdir()
            labels = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}"
                               for k, v in BENCH_LABEL.items())
            args = [
                "run", "--role", "node", "--plugins", "runtime_docker,source_file",
                "--hostname-override", node, "--data-dir", str(Path(tmp) / "data"),
                "--log-format", "json",
                "--set", f"source_file.path={manifests}",
                "--set", "kubelet.port=0", "--set", 'kubelet.address="127.0.0.1"',
                "--set", f"runtime_docker.infra_image={image}",
                "--set", 'runtime_docker.infra_command=["sleep", "2147483647"]',
                "--set", f"runtime_docker.labels={{{labels}}}",
                "--set", f"runtime_docker.node={node}",
            ]
            with KubecoreProcess(args, cwd=ROOT) as proc:
                proc.wait_event("kubecore is up", timeout=60)
                direct_start(client, events, image)  # warm the daemon's paths once
                for index in range(pods):
                    kube.append(kubecore_start(events, node, manifests, image, index,
                                               2 * (index + 1)))
                    direct.append(direct_start(client, events, image))
                proc.stop()
    finally:
        events.close()
        cleanup(client)
    k_median = statistics.median(kube) * 1000
    d_median = statistics.median(direct) * 1000
    return [
        Measure(f"pod start median ({pods} pods)", "ms", k_median, d_median,
                "docker SDK: infra + app container", target=1.3, goal="ratio_at_most"),
    ]
