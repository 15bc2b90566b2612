"""The Store protocol: the one place cluster state lives.

A store is a key-value map with a single, cluster-wide revision counter, modelled on
etcd v3: every write (create, update, delete) bumps the revision by one and stamps the
written key with it. Values are opaque bytes (kubecore writes v1beta1 JSON). Keys are
``/``-separated strings such as ``/registry/pods/default/web-1``.

Contract every store plugin keeps (checked by ``tests/contract/test_store.py``):

- ``create`` fails with :class:`KeyExists` if the key is present.
- ``update`` is compare-and-swap on the key's ``mod_revision``; a mismatch raises
  :class:`Conflict`, a missing key :class:`KeyNotFound`.
- ``delete`` removes a key (optionally only at an expected revision) and returns the
  last value it had.
- ``list`` returns every key under a prefix, sorted by key, together with the store
  revision the read was made at; a watch started from that revision misses nothing.
- ``watch(prefix, revision)`` yields every change under ``prefix`` with a revision
  strictly greater than ``revision``, in revision order, each exactly once, for as long
  as the caller iterates. When ``revision`` is older than what the store still keeps,
  the iterator raises :class:`Compacted` (the caller re-lists and watches again).
- A store that cannot reach its backend raises :class:`StoreUnavailable`; callers
  retry, never crash.
- Closing a store (``aclose``) ends its open watches with :class:`StoreUnavailable`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as stored: its value and the revisions that created and last changed it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change. For ``DELETE``, ``kv.value`` is the value the key had before removal
    and ``kv.mod_revision`` is the revision of the deletion. ``prev`` is the previous
    value of a ``PUT`` that modified an existing key (``None`` for a create). For
    ``DELETE``, ``prev`` is the key as it was just before removal (its value and old
    ``mod_revision``)."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class StoreError(Exception):
    """Base of every error a store raises."""


class KeyNotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class KeyExists(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class Conflict(StoreError):
    """A compare-and-swap found the key at another revision than expected."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"conflict on {key}: expected revision {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class Compacted(StoreError):
    """The requested revision is older than the oldest one the store still keeps."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} is gone (compacted up to {compact_revision}); re-list"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class StoreUnavailable(StoreError):
    """The backend cannot be reached right now; the operation may be retried."""


@runtime_checkable
class Store(Protocol):
    """What a store plugin's ``kubecore_store`` hook returns."""

    name: str

    async def get(self, key: str) -> KeyValue | None:
        """The key's current value, or ``None``."""
        ...

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key starting with ``prefix``, sorted by key, and the revision read at."""
        ...

    async def revision(self) -> int:
        """The store's current revision (0 for an empty, never-written store)."""
        ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create ``key``; raises :class:`KeyExists` if present. Returns what was stored."""
        ...

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Replace ``key`` if its ``mod_revision`` is ``expected_revision``."""
        ...

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        """Remove ``key``; returns its last value with the deletion's revision."""
        ...

    def watch(
        self, prefix: str, revision: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Changes under ``prefix`` after ``revision``; closing the context stops it."""
        ...

    async def compact(self, revision: int) -> None:
        """Drop the history before ``revision``: watches from older revisions then raise
        :class:`Compacted`. Current values are untouched."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and files. Idempotent."""
        ...
