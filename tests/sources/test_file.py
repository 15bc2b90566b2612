"""source_file when its directory goes away and comes back: v0.5 ignored a missing
path, so the last good pods stay and nothing is stopped; the source then resumes."""

from __future__ import annotations

import json
from pathlib import Path

import structlog
from kubecore_source_file import FileSource, pod_id_for

from kubecore.kubelet.node import Kubelet
from kubecore.runtime import ContainerState
from tests.kubelet.conftest import KubeletFactory
from tests.kubelet.helpers import wait_until
from tests.sources.helpers import manifest


async def running_ids(kubelet: Kubelet) -> dict[str, str]:
    return {c.pod_uid: c.id for c in await kubelet.runtime.list_containers(all=True)
            if c.state is ContainerState.RUNNING}


async def test_directory_away_and_back_stops_no_pod(tmp_path: Path,
                                                    start_kubelet: KubeletFactory) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    a, b = manifests / "a.json", manifests / "b.json"
    a.write_text(json.dumps(manifest()))
    b.write_text(json.dumps(manifest(command=["sleep", "61"])))
    uids = {pod_id_for(a), pod_id_for(b)}
    source = FileSource(manifests, check_interval=0.05)
    async with start_kubelet([source]) as kubelet:

        async def both() -> dict[str, str] | None:
            found = await running_ids(kubelet)
            return found if set(found) == uids else None

        before = await wait_until(both, what="both pods running")
        with structlog.testing.capture_logs() as logs:
            manifests.rename(tmp_path / "elsewhere")  # gone, as an unmounted share
            reads, rounds = source.reads, kubelet.sync.rounds

            async def waited() -> bool:
                return source.reads >= reads + 5 and kubelet.sync.rounds >= rounds + 3

            await wait_until(waited, what="re-reads and rounds while the path is away")
            assert await running_ids(kubelet) == before
            assert len(kubelet.desired.pods) == 2
            (tmp_path / "elsewhere").rename(manifests)
            reads = source.reads
            await wait_until(lambda: _at_least(source, reads + 3), what="reads again")
        missing = [line for line in logs if "missing" in line["event"]]
        assert len(missing) == 1 and missing[0]["path"] == str(manifests)
        assert await running_ids(kubelet) == before

        a.unlink()  # the source is live again: a removal is seen

        async def only_b() -> dict[str, str] | None:
            found = await running_ids(kubelet)
            return found if set(found) == {pod_id_for(b)} else None

        assert (await wait_until(only_b, what="pod a stopped"))[pod_id_for(b)] == \
            before[pod_id_for(b)]


async def _at_least(source: FileSource, reads: int) -> bool:
    return source.reads >= reads
