"""Printing API objects: kubecfg-style tables, JSON and YAML.

Tables have one header row and one row per object, columns as kubecfg prints them:
pods ``NAME IMAGE(S) HOST LABELS STATUS``, replication controllers ``NAME IMAGE(S)
SELECTOR REPLICAS``, services ``NAME LABELS SELECTOR IP PORT``, minions ``NAME
LABELS``, endpoints ``NAME ENDPOINTS``, events ``TIME KIND NAME REASON MESSAGE``.
Cells never wrap when standard output is not a terminal, so scripts can split rows on
whitespace runs (empty values print as ``<none>``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import click
import yaml
from rich.console import Console
from rich.table import Table

from kubecore.api import (
    API_VERSION,
    Endpoints,
    Event,
    Minion,
    Pod,
    ReplicationController,
    Service,
    TypeMeta,
    encode_yaml,
    format_time,
    to_dict,
    with_kind,
)

OutputFormat = Literal["table", "json", "yaml"]
FORMATS: tuple[OutputFormat, ...] = ("table", "json", "yaml")

NONE = "<none>"


def _labels(labels: Mapping[str, str]) -> str:
    """``k=v,k2=v2`` sorted by key, as Go's ``labels.Set.String``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or NONE


def _images(containers: Sequence[Any]) -> str:
    return ",".join(c.image for c in containers) or NONE


def _pod_row(pod: Pod) -> list[str]:
    state = pod.current_state
    host = state.host or pod.desired_state.host
    where = "<unassigned>" if not host and not state.host_ip else f"{host}/{state.host_ip}"
    return [pod.id, _images(pod.desired_state.manifest.containers), where,
            _labels(pod.labels), state.status or NONE]


def _rc_row(rc: ReplicationController) -> list[str]:
    desired = rc.desired_state
    return [rc.id, _images(desired.pod_template.desired_state.manifest.containers),
            _labels(desired.replica_selector), str(desired.replicas)]


def _service_row(service: Service) -> list[str]:
    return [service.id, _labels(service.labels), _labels(service.selector),
            service.portal_ip or NONE, str(service.port)]


def _minion_row(minion: Minion) -> list[str]:
    return [minion.id, _labels(minion.labels)]


def _endpoints_row(endpoints: Endpoints) -> list[str]:
    return [endpoints.id, ",".join(endpoints.endpoints) or NONE]


def _event_row(event: Event) -> list[str]:
    target = event.involved_object
    return [format_time(event.timestamp) or NONE, target.kind or NONE,
            target.name or NONE, event.reason or NONE, event.message or NONE]


_COLUMNS: dict[type[TypeMeta], tuple[tuple[str, ...], Callable[[Any], list[str]]]] = {
    Pod: (("NAME", "IMAGE(S)", "HOST", "LABELS", "STATUS"), _pod_row),
    ReplicationController: (("NAME", "IMAGE(S)", "SELECTOR", "REPLICAS"), _rc_row),
    Service: (("NAME", "LABELS", "SELECTOR", "IP", "PORT"), _service_row),
    Minion: (("NAME", "LABELS"), _minion_row),
    Endpoints: (("NAME", "ENDPOINTS"), _endpoints_row),
    Event: (("TIME", "KIND", "NAME", "REASON", "MESSAGE"), _event_row),
}


def columns(model: type[TypeMeta]) -> tuple[str, ...]:
    """The table header of ``model``'s objects."""
    return _COLUMNS[model][0]


def row(obj: TypeMeta) -> list[str]:
    """The table cells of ``obj`` (in :func:`columns` order)."""
    return _COLUMNS[type(obj)][1](obj)


def console(err: bool = False) -> Console:
    """A console on stdout (or stderr) that does not wrap or colour when not a tty."""
    stream = sys.stderr if err else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, width=None if tty else 1 << 12, highlight=False,
                   no_color=not tty, soft_wrap=not tty)


def print_table(model: type[TypeMeta], objects: Sequence[TypeMeta]) -> None:
    """A header and one row per object on stdout."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns(model):
        table.add_column(name, no_wrap=not sys.stdout.isatty(), overflow="fold")
    for obj in objects:
        table.add_row(*row(obj))
    if sys.stdout.isatty():
        console().print(table)
        return
    out = console()
    with out.capture() as captured:
        out.print(table)
    # Rich pads the last column; scripts compare lines, so no trailing blanks.
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def plain(obj: TypeMeta) -> dict[str, Any]:
    """``obj`` as plain JSON-ready data with its ``kind`` and ``apiVersion``."""
    return to_dict(with_kind(obj))


def list_dict(model: type[TypeMeta], objects: Sequence[TypeMeta],
              resource_version: int = 0) -> dict[str, Any]:
    """The ``<Kind>List`` object holding ``objects``, as plain data."""
    return {"kind": f"{model.KIND}List", "apiVersion": API_VERSION,
            "resourceVersion": resource_version, "items": [plain(o) for o in objects]}


def print_objects(model: type[TypeMeta], objects: Sequence[TypeMeta], fmt: OutputFormat,
                  *, single: bool = False, resource_version: int = 0) -> None:
    """Print ``objects`` in ``fmt``; ``single`` prints one object bare, not as a list."""
    if fmt == "table":
        print_table(model, objects)
        return
    if single and len(objects) == 1:
        if fmt == "json":
            click.echo(json.dumps(plain(objects[0]), indent=2))
        else:
            click.echo(encode_yaml(with_kind(objects[0])), nl=False)
        return
    data = list_dict(model, objects, resource_version)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
                                  width=1 << 16), nl=False)


class RowStream:
    """Rows printed one by one under a header printed once (for ``--watch``).

    Column widths are fixed at the header's (at least 12 characters), so rows line up
    unless a value is longer; the last column is never padded.
    """

    def __init__(self, header: Sequence[str]) -> None:
        self._widths = [max(len(name), 12) for name in header]
        self._emit(list(header))

    def _emit(self, cells: list[str]) -> None:
        parts = [cell.ljust(width) for cell, width in zip(cells[:-1], self._widths, strict=False)]
        click.echo("   ".join([*parts, cells[-1]]).rstrip())

    def add(self, cells: Sequence[str]) -> None:
        self._emit(list(cells))
