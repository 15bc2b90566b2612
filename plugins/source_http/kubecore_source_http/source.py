"""Polling a URL for manifests (v0.5's ``-manifest_url``).

Every ``check_interval`` seconds the URL is fetched. A snapshot is yielded for the
first body and for every changed one: ``If-None-Match`` / ``If-Modified-Since`` are sent
when the server gave an ``ETag`` / ``Last-Modified`` (a 304 is unchanged), and a 200 with
the same bytes as the last body is unchanged too. The body is decoded by
:func:`kubecore_source_http.manifests.decode_pods`: each bad manifest is a rejected
entry naming the URL, its position and the field.

An unreachable server, a timeout, a non-2xx answer or a body that does not decode at
all yields nothing (the last good pods stay in force; an undecodable body is reported
once as a rejected entry beside those pods) and is logged once per outage; the next
good answer resumes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import trio

from kubecore.api import BoundPod, InvalidObject
from kubecore.kubelet.sources import Rejected, Snapshot
from kubecore.log import get_logger
from kubecore_source_http.manifests import MAX_BODY_BYTES, decode_pods

log = get_logger("kubecore.source_http")

SOURCE_NAME = "http"


class _Unavailable(Exception):
    """The URL gave no usable answer this time."""


class HTTPSource:
    """The ``http`` manifest source polling ``url``."""

    name = SOURCE_NAME

    def __init__(self, url: str, check_interval: float = 20.0, timeout: float = 10.0) -> None:
        self.url = url
        self.check_interval = check_interval
        self.timeout = timeout
        self.polls = 0  # requests answered or failed, for tests and diagnostics
        self.changes = 0  # bodies decoded
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._body: bytes | None = None

    def _conditions(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._etag is not None:
            headers["If-None-Match"] = self._etag
        if self._last_modified is not None:
            headers["If-Modified-Since"] = self._last_modified
        return headers

    async def _fetch(self, client: httpx.AsyncClient) -> bytes | None:
        """The new body, ``None`` when unchanged; :class:`_Unavailable` otherwise."""
        try:
            async with client.stream("GET", self.url, headers=self._conditions()) as response:
                if response.status_code == 304:
                    return None
                if not 200 <= response.status_code < 300:
                    raise _Unavailable(f"HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise _Unavailable(f"body larger than {MAX_BODY_BYTES} bytes")
                    chunks.append(chunk)
                body = b"".join(chunks)
                etag = response.headers.get("etag")
                modified = response.headers.get("last-modified")
        except httpx.HTTPError as exc:
            raise _Unavailable(str(exc) or type(exc).__name__) from None
        self._etag, self._last_modified = etag, modified
        if body == self._body:
            return None
        self._body = body
        return body

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        """A snapshot once the URL first answers, then one per changed body."""
        failing: str | None = None
        good: Sequence[BoundPod] = []
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
            while True:
                snapshot: Snapshot | None = None
                try:
                    body = await self._fetch(client)
                except _Unavailable as exc:
                    if failing is None:
                        log.warning("manifest URL unavailable; keeping the last pods",
                                    url=self.url, error=str(exc))
                    failing = str(exc)
                else:
                    if failing is not None:
                        log.info("manifest URL answers again", url=self.url)
                        failing = None
                    if body is not None:
                        self.changes += 1
                        try:
                            decoded = await trio.to_thread.run_sync(
                                decode_pods, body, self.url, SOURCE_NAME)
                        except InvalidObject as exc:
                            # The previous pods stay; the report names the URL.
                            snapshot = Snapshot(pods=good, rejected=[Rejected(self.url, exc)])
                        else:
                            good = decoded.pods
                            snapshot = Snapshot(pods=good, rejected=decoded.rejected)
                self.polls += 1
                if snapshot is not None:
                    yield snapshot
                await trio.sleep(self.check_interval)
