"""``kubecore validate``: check manifest files without a cluster.

Each ``-f`` names a file, a directory (its non-hidden regular files, sorted, not
recursively) or ``-`` for standard input. Every object in every input is decoded
(JSON or YAML; several YAML documents, a top-level array and ``*List`` objects hold
several objects; an input with none is an error), given v0.5's defaults and validated
by its kind. A document without ``kind`` that has ``version`` and ``containers`` is a
ContainerManifest, as kubelet manifest files are.

Each problem is one line on stderr, ``FILE: KIND/ID: field: message`` (``#N`` stands
for a missing id: the object's position in its file), then a summary line follows on
stdout. The exit status is 1 if anything is invalid or unreadable, else 0. No input
can make it print a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from kubecore.api.codec import (
    MAX_INPUT_BYTES,
    RawObject,
    decode_value,
    load_documents,
    split_objects,
)
from kubecore.api.defaults import apply_defaults
from kubecore.api.errors import Cause, InvalidObject, Reason
from kubecore.api.meta import TypeMeta
from kubecore.api.types import ContainerManifest
from kubecore.api.validation import validate as validate_object

STDIN = "-"


@dataclass
class _Tally:
    objects: int = 0
    invalid: int = 0
    errors: int = 0

    def report(self, where: str, causes: list[Cause]) -> None:
        self.objects += 1
        if causes:
            self.invalid += 1
            self.errors += len(causes)
            for cause in causes:
                click.echo(f"{where}: {cause}", err=True)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _inputs(name: str) -> Iterator[tuple[str, bytes | str]]:
    """(display name, content) for each input ``name`` stands for; a str content is an
    error message about that input."""
    if name == STDIN:
        with click.open_file(STDIN, "rb") as stream:  # leaves standard input open
            data: bytes = stream.read(MAX_INPUT_BYTES + 1)
        yield "<stdin>", data
        return
    path = Path(name)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if not p.name.startswith(".")
                           and p.is_file())
        else:
            files = [path]
    except OSError as exc:
        yield name, f"cannot read: {exc.strerror or exc}"
        return
    for file in files:
        shown = str(file)
        if not file.exists():
            yield shown, "no such file or directory"
            continue
        try:
            with file.open("rb") as stream:
                # Anything past the limit is refused by the decoder: no need to read it.
                yield shown, stream.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            yield shown, f"cannot read: {exc.strerror or exc}"


def _looks_like_manifest(value: Any) -> bool:
    return (isinstance(value, dict) and "kind" not in value
            and "version" in value and "containers" in value)


def _check(raw: RawObject, allow_privileged: bool) -> tuple[str, str, list[Cause]]:
    """(kind, id, causes) of one object."""
    kind: type[TypeMeta] | type[ContainerManifest] | None = raw.item_kind
    if kind is None and _looks_like_manifest(raw.value):
        kind = ContainerManifest
    try:
        obj = decode_value(raw.value, kind=kind)
    except InvalidObject as exc:
        return exc.kind, exc.id, exc.causes
    obj = apply_defaults(obj)
    return obj.KIND, obj.id, validate_object(obj, allow_privileged=allow_privileged)


def _validate_input(shown: str, data: bytes, tally: _Tally, allow_privileged: bool) -> None:
    try:
        raws = list(split_objects(load_documents(data)))
    except InvalidObject as exc:
        tally.report(shown, exc.causes)
        return
    if not raws:
        tally.report(shown, [Cause(Reason.INVALID, "no objects found (empty input)")])
    for number, raw in enumerate(raws, start=1):
        kind, object_id, causes = _check(raw, allow_privileged)
        tally.report(f"{shown}: {kind or '?'}/{object_id or f'#{number}'}", causes)


@click.command("validate")
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    required=True,
    metavar="PATH",
    help="A manifest file, a directory of them, or - for standard input (repeatable).",
)
@click.option(
    "--allow-privileged",
    is_flag=True,
    help="Accept privileged containers (as a kubelet started with -allow_privileged).",
)
def validate(filenames: tuple[str, ...], allow_privileged: bool) -> None:
    """Check that manifest files hold valid v1beta1 objects."""
    tally = _Tally()
    try:
        for name in filenames:
            for shown, content in _inputs(name):
                if isinstance(content, str):
                    tally.report(shown, [Cause("Unreadable", content)])
                else:
                    _validate_input(shown, content, tally, allow_privileged)
    except Exception as exc:  # a guarantee: one line, never a traceback
        click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(1) from None
    if tally.errors:
        click.echo(f"{_plural(tally.errors, 'error')} in {tally.invalid} of "
                   f"{_plural(tally.objects, 'object')}")
        raise SystemExit(1)
    click.echo(f"{_plural(tally.objects, 'object')} valid")
