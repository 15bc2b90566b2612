"""Event expiry (v0.5's ``-event_ttl``): events older than the TTL are deleted by the
apiserver's sweep, on a real registry and store and in a real master process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from kubecore.api import Event, ObjectReference
from kubecore.apiserver.expiry import expire_events, sweep_interval
from kubecore.apiserver.resources import EVENTS
from kubecore.apiserver.stored import encode_stored
from kubecore.client import ApiError, Client
from tests.apiserver.harness import TIMEOUT, Api
from tests.processes import KubecoreProcess

TTL = 48 * 3600.0


def an_event(id: str, namespace: str = "default") -> Event:
    return Event(id=id, namespace=namespace, reason="scheduled", message=f"{id} happened",
                 involved_object=ObjectReference(kind="Pod", name="web", namespace=namespace))


async def test_events_older_than_the_ttl_are_deleted_and_watchers_see_it(api: Api) -> None:
    fresh = await api.registry.create(EVENTS.name, an_event("fresh"))
    assert fresh.creation_timestamp is not None
    three_days_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    for id, namespace in (("old", "default"), ("old-elsewhere", "prod")):
        stale = an_event(id, namespace)
        stale.creation_timestamp = stale.timestamp = three_days_ago
        await api.store.create(EVENTS.key(namespace, id), encode_stored(stale))
    listed = await api.registry.list(EVENTS.name)
    watcher = api.registry.open_watch(EVENTS.name, resource_version=listed.resource_version)
    seen: list[tuple[str, str]] = []
    both = trio.Event()

    async def emit(type: str, obj: object) -> None:
        seen.append((type, getattr(obj, "id", "")))
        if len(seen) == 2:
            both.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher.run, emit)
        assert await expire_events(api.registry, TTL) == 2
        with trio.fail_after(TIMEOUT):
            await both.wait()
        nursery.cancel_scope.cancel()
    assert sorted(seen) == [("DELETED", "old"), ("DELETED", "old-elsewhere")]
    remaining = await api.registry.list(EVENTS.name)
    assert [e.id for e in remaining.items] == ["fresh"]  # type: ignore[attr-defined]
    # Nothing is old enough now; a day later than the TTL, the fresh one goes too.
    assert await expire_events(api.registry, TTL) == 0
    later = fresh.creation_timestamp + timedelta(seconds=TTL + 1)
    assert await expire_events(api.registry, TTL, now=later) == 1
    assert (await api.registry.list(EVENTS.name)).items == []  # type: ignore[attr-defined]


def test_sweeps_come_at_half_the_ttl_at_most_every_ten_minutes() -> None:
    assert sweep_interval(1.0) == 0.5
    assert sweep_interval(TTL) == 600.0


def test_a_master_forgets_events_after_its_ttl(tmp_path: Path) -> None:
    args = ["run", "--role", "master", "--plugins", "store_sqlite", "--data-dir",
            str(tmp_path), "--log-format", "json", "--set", "apiserver.port=0",
            "--set", "apiserver.event_ttl=1"]
    with KubecoreProcess(args) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        with Client(url) as client:
            created = client.create(an_event("short-lived"))
            assert client.get(Event, created.id).message == "short-lived happened"
            assert proc.wait_event("events expired", timeout=TIMEOUT)["count"] == 1
            with pytest.raises(ApiError) as gone:
                client.get(Event, created.id)
            assert gone.value.code == 404
        assert httpx.get(f"{url}/healthz").text == "ok"
        assert proc.stop() == 0
    assert "Traceback" not in proc.output
