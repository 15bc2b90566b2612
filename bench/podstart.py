"""Pod start benchmark: a kubelet on runtime_docker beside ``docker run`` by hand.

- kubecore: ``kubecore run --role node --plugins runtime_docker,source_file`` watches a
  manifest directory; a one-container pod manifest is renamed into it and the time runs
  until Docker reports the pod's infra and app containers running (polled by label);
- direct: the same two containers started with the Docker SDK: an infra container
  publishing the port on 127.0.0.1, then the app container joining its network
  namespace; the time runs until both are started.

K pods each (``--quick``: 3, full: 10), alternating; medians compared. Every container
carries the label ``kubecore.bench=podstart`` and all are removed at the end. The image
is ``kubecore/busybox:test``, built locally; nothing is pulled.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
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


def running(client: docker.DockerClient, node: str) -> int:
    return len(client.containers.list(
        filters={"label": [f"kubecore.node={node}"], "status": "running"}))


def kubecore_start(client: docker.DockerClient, node: str, manifests: Path, image: str,
                   index: int, expected: int) -> float:
    """Seconds from the manifest's arrival to ``expected`` containers running."""
    scratch = manifests.parent / f"pod{index}.json"
    scratch.write_text(manifest(image))
    started = time.perf_counter()
    scratch.rename(manifests / f"pod{index}.json")  # arrives whole, in one step
    deadline = started + 60
    while running(client, node) < expected:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"pod {index} did not start within 60s")
        time.sleep(0.01)
    return time.perf_counter() - started


def direct_start(client: docker.DockerClient, image: str, index: int) -> float:
    """Seconds to start an infra container and an app container in its namespace."""
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    infra = client.containers.run(
        image, COMMAND, name=f"bench-infra-{tag}", detach=True, labels=BENCH_LABEL,
        ports={f"{PORT}/tcp": ("127.0.0.1", None)})
    client.containers.run(
        image, COMMAND, name=f"bench-app-{tag}", detach=True, labels=BENCH_LABEL,
        network_mode=f"container:{infra.id}")
    return time.perf_counter() - started


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
                direct_start(client, image, -1)  # warm the daemon's paths once
                for index in range(pods):
                    kube.append(kubecore_start(client, node, manifests, image, index,
                                               2 * (index + 1)))
                    direct.append(direct_start(client, image, index))
                proc.stop()
    finally:
        cleanup(client)
    k_median = statistics.median(kube) * 1000
    d_median = statistics.median(direct) * 1000
    return [
        Measure(f"pod start median ({pods} pods)", "ms", k_median, d_median,
                "docker SDK: infra + app container", target=1.3, goal="ratio_at_most"),
    ]
