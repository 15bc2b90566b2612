"""A file as the proxy's configuration source.

The file holds one JSON or YAML object::

    {"services":  [<v1beta1 Service>, ...],
     "endpoints": [<v1beta1 Endpoints>, ...]}

It is decoded with :mod:`kubecore.api` (defaults applied: namespace ``default``,
protocol ``TCP``) and handed to the proxier whole. The file is checked every ``poll``
seconds and re-read when its modification time, size or inode changes. A missing or
invalid file is one clear log line; the last good configuration stays in force.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import trio

from kubecore.api import (
    Endpoints,
    InvalidObject,
    Service,
    apply_defaults,
    decode_value,
    load_documents,
)
from kubecore.log import get_logger
from kubecore.proxy import Proxier

log = get_logger("kubecore.proxy_userspace")

KEYS = ("services", "endpoints")


class ServicesFileError(Exception):
    """The services file cannot be used; ``str()`` says why, naming the file."""


def parse_services(data: bytes, source: str) -> tuple[list[Service], list[Endpoints]]:
    """Decode a services file's content; raises :class:`ServicesFileError`."""
    try:
        documents = load_documents(data)
    except InvalidObject as exc:
        raise ServicesFileError(f"{source}: {exc}") from None
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ServicesFileError(
            f'{source}: expected one object {{"services": [...], "endpoints": [...]}}'
        )
    document: dict[str, Any] = documents[0]
    unknown = sorted(str(key) for key in document if key not in KEYS)
    if unknown:
        raise ServicesFileError(
            f"{source}: unknown key(s) {', '.join(unknown)} (expected services, endpoints)"
        )
    services = [apply_defaults(item) for item in _decode(document, "services", Service, source)]
    endpoints = [
        apply_defaults(item) for item in _decode(document, "endpoints", Endpoints, source)
    ]
    return services, endpoints


T = TypeVar("T", Service, Endpoints)


def _decode(
    document: dict[str, Any], name: str, kind: type[T], source: str
) -> list[T]:
    items = document.get(name)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ServicesFileError(f"{source}: {name} must be an array")
    decoded: list[T] = []
    for index, item in enumerate(items):
        try:
            decoded.append(decode_value(item, kind=kind))
        except InvalidObject as exc:
            causes = "; ".join(str(cause) for cause in exc.causes)
            raise ServicesFileError(f"{source}: {name}[{index}]: {causes}") from None
    return decoded


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


async def follow_services_file(
    path: Path,
    proxier: Proxier,
    *,
    poll: float = 1.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Feed ``proxier`` from ``path`` until cancelled; ``task_status.started()`` is
    called after the first attempt to read it (applied or not)."""
    last: tuple[int, int, int] | None = None
    problem = ""
    started = False
    while True:
        stamp = await trio.to_thread.run_sync(_stamp, path)
        if stamp is None:
            message = f"{path}: no such file (or not readable)"
            if message != problem:
                problem = message
                log.warning("services file missing", path=str(path),
                            note="the last good configuration stays in force")
        elif stamp != last:
            last = stamp
            try:
                data = await trio.Path(path).read_bytes()
                services, endpoints = parse_services(data, str(path))
            except (OSError, ServicesFileError) as exc:
                message = str(exc)
                if message != problem:
                    problem = message
                    log.error("services file invalid", path=str(path), error=message,
                              note="the last good configuration stays in force")
            else:
                problem = ""
                await proxier.apply(services, endpoints)
                log.info("services file applied", path=str(path), services=len(services),
                         endpoints=sum(len(item.endpoints) for item in endpoints))
        if not started:
            started = True
            task_status.started()
        await trio.sleep(poll)
