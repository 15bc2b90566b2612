"""``kubecore get|list|create|update|delete``: kubecfg's resource verbs on the API.

``<resource>[/<id>]`` names ``pods``, ``services``, ``replicationControllers`` (also
``rc``, ``replicationcontrollers``), ``minions``, ``endpoints`` or ``events``. ``get``
and ``list`` read one object (with an id) or a list (without; every namespace unless
``--namespace`` is given); ``create`` and ``update`` send the objects of ``-f`` inputs
(the resource follows from each object's kind); ``delete`` removes ``<resource>/<id>``
or the objects of ``-f`` inputs. ``update`` reads each object first and sends it back
at the stored ``resourceVersion``.

Every failure ends the command with ``error: <message>`` on stderr (an invalid object
adds one indented ``field: message`` line per cause) and exit status 1; success is 0.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import trio
import yaml

from kubecore.api import (
    DEFAULT_NAMESPACE,
    MAX_INPUT_BYTES,
    InvalidObject,
    Pod,
    Selector,
    TypeMeta,
    decode_documents,
)
from kubecore.cli.output import (
    FORMATS,
    OutputFormat,
    RowStream,
    columns,
    plain,
    print_objects,
    row,
)
from kubecore.client import (
    RESOURCE_NAMES,
    AsyncClient,
    Client,
    model_for,
    resource_name,
)
from kubecore.errors import KubecoreError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "KUBECORE_SERVER"
STDIN = "-"

ALIASES = {"rc": "replicationControllers", "replicationcontrollers": "replicationControllers",
           "pod": "pods", "service": "services", "minion": "minions", "event": "events"}


class CliError(KubecoreError):
    """A problem with what was asked (a resource name, an input file...)."""


# -- connection options ---------------------------------------------------------------


def client_options(command: F) -> F:
    """Add ``--server``, ``--token`` and ``--token-file`` to ``command``."""
    decorators = [
        click.option("--server", envvar=SERVER_ENV, default=DEFAULT_SERVER,
                     show_default=True, metavar="URL",
                     help=f"The apiserver (or set {SERVER_ENV})."),
        click.option("--token", metavar="TOKEN", help="Bearer token to send."),
        click.option("--token-file", type=click.Path(path_type=Path),
                     help="File holding the bearer token."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _token(token: str | None, token_file: Path | None) -> str | None:
    if token_file is None:
        return token
    try:
        return token_file.read_text().strip() or None
    except OSError as exc:
        raise CliError(f"cannot read token file {token_file}: "
                       f"{exc.strerror or exc}") from None


def _check_server(server: str) -> str:
    url = httpx.URL(server)
    if url.scheme not in ("http", "https") or not url.host:
        raise CliError(f"invalid --server {server!r}: expected http(s)://HOST[:PORT]")
    return server


def make_client(server: str, token: str | None, token_file: Path | None) -> Client:
    """The sync client for the connection options."""
    return Client(_check_server(server), token=_token(token, token_file))


def make_async_client(server: str, token: str | None, token_file: Path | None) -> AsyncClient:
    """The async client (for watches) for the connection options."""
    return AsyncClient(_check_server(server), token=_token(token, token_file))


@contextmanager
def no_traceback() -> Iterator[None]:
    """Turn anything unexpected into one ``error:`` line (KubecoreError passes through,
    to be printed by the command group); a closed stdout ends the command quietly."""
    try:
        yield
    except (KubecoreError, click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
        raise
    except BrokenPipeError:
        # The reader went away (``| head``): nothing left to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
    except Exception as exc:  # a guarantee: one line, never a traceback
        raise CliError(f"unexpected {type(exc).__name__}: {exc}") from None


# -- resources and inputs ---------------------------------------------------------------


def parse_resource(text: str) -> tuple[type[TypeMeta], str]:
    """``pods/web`` -> (Pod, "web"); ``rc`` -> (ReplicationController, "")."""
    name, _, object_id = text.partition("/")
    name = ALIASES.get(name, name)
    try:
        model = model_for(name)
    except KeyError:
        known = ", ".join(RESOURCE_NAMES.values())
        raise CliError(f"unknown resource {name!r} (one of: {known}, rc)") from None
    if "/" in text and not object_id:
        raise CliError(f"missing id after {name}/")
    return model, object_id


def _read_source(name: str) -> Iterator[tuple[str, bytes]]:
    """(display name, content) of each input ``name`` stands for."""
    if name == STDIN:
        with click.open_file(STDIN, "rb") as stream:
            yield "<stdin>", stream.read(MAX_INPUT_BYTES + 1)
        return
    if name.startswith(("http://", "https://")):
        try:
            response = httpx.get(name, timeout=30.0, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot fetch {name}: {exc}") from None
        if not response.is_success:
            raise CliError(f"cannot fetch {name}: HTTP {response.status_code}")
        yield name, response.content
        return
    path = Path(name)
    try:
        files = (sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
                 if path.is_dir() else [path])
        for file in files:
            with file.open("rb") as stream:
                yield str(file), stream.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename or name}: {exc.strerror or exc}") from None


def read_objects(names: tuple[str, ...]) -> list[TypeMeta]:
    """Every object of every ``-f`` input, typed by its ``kind``; a bad input raises
    :class:`CliError` naming the file and listing the decoder's causes."""
    objects: list[TypeMeta] = []
    for name in names:
        for shown, data in _read_source(name):
            try:
                found = decode_documents(data, shown)
            except InvalidObject as exc:
                causes = "\n".join(f"  {cause}" for cause in exc.causes)
                raise CliError(f"{exc.source or shown}: {exc.describe()}\n{causes}") from None
            if not found:
                raise CliError(f"{shown}: no objects found (empty input)")
            for obj in found:
                if not isinstance(obj, TypeMeta) or type(obj) not in RESOURCE_NAMES:
                    raise CliError(f"{shown}: cannot send a {obj.KIND or 'manifest'} "
                                   f"(kinds: Pod, Service, ReplicationController, Minion, "
                                   f"Endpoints, Event)")
                objects.append(obj)
    return objects


def _describe(model: type[TypeMeta], object_id: str) -> str:
    return f"{resource_name(model)}/{object_id}"


def _selected_objects(resource: str | None, filenames: tuple[str, ...]) -> list[TypeMeta]:
    if not filenames:
        raise CliError("no input: give -f FILE|DIR|URL|-")
    objects = read_objects(filenames)
    if resource:
        model, object_id = parse_resource(resource)
        for obj in objects:
            if type(obj) is not model:
                raise CliError(f"{obj.KIND} {obj.id!r} is not one of {resource_name(model)}")
            if object_id and obj.id != object_id:
                raise CliError(f"the input holds {_describe(model, obj.id)}, "
                               f"not {_describe(model, object_id)}")
    return objects


def _namespace_of(obj: TypeMeta, namespace: str | None) -> str:
    return obj.namespace or namespace or DEFAULT_NAMESPACE


# -- shared options -------------------------------------------------------------------

_namespace_option = click.option(
    "-n", "--namespace", metavar="NS",
    help="Namespace (default: 'default' for one object, all namespaces for lists).")
_output_option = click.option(
    "-o", "--output", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="Output format.")
_file_option = click.option(
    "-f", "--filename", "filenames", multiple=True, metavar="PATH",
    help="A JSON/YAML file, a directory of them, a URL, or - for stdin (repeatable).")


# -- get / list -----------------------------------------------------------------------


def _get_or_list(resource: str, namespace: str | None, labels: str | None,
                 fields: str | None, fmt: OutputFormat, watch: bool, server: str,
                 token: str | None, token_file: Path | None) -> None:
    model, object_id = parse_resource(resource)
    label_selector = Selector.parse(labels) if labels else None
    field_selector = Selector.parse(fields) if fields else None
    if watch:
        _watch(model, object_id, namespace, label_selector, field_selector, fmt,
               server, token, token_file)
        return
    with make_client(server, token, token_file) as client:
        if object_id:
            obj = client.get(model, object_id, namespace=namespace or DEFAULT_NAMESPACE)
            print_objects(model, [obj], fmt, single=True)
            return
        listed = client.list(model, namespace=namespace, labels=label_selector,
                             fields=field_selector)
    print_objects(model, listed.items, fmt, resource_version=listed.resource_version)


def _watch(model: type[TypeMeta], object_id: str, namespace: str | None,
           labels: Selector | None, fields: Selector | None, fmt: OutputFormat,
           server: str, token: str | None, token_file: Path | None) -> None:
    """Stream every object, then every change, until the stream ends or Ctrl-C."""
    if object_id:
        namespace = namespace or DEFAULT_NAMESPACE
        if model is Pod:  # the server filters pods by name; others are filtered here
            fields = Selector.parse(f"name={object_id}" + (f",{fields}" if fields else ""))

    async def follow() -> None:
        async with make_async_client(server, token, token_file) as client, \
                client.watch(model, 0, namespace=namespace, labels=labels,
                             fields=fields) as events:
            # The header waits for an open stream, so a failure prints only the error.
            stream = RowStream(("EVENT", *columns(model))) if fmt == "table" else None
            async for event in events:
                if object_id and event.object.id != object_id:
                    continue
                if stream is not None:
                    stream.add([event.type, *row(event.object)])
                elif fmt == "json":
                    click.echo(json.dumps({"type": event.type, "object": plain(event.object)}))
                else:
                    click.echo("---\n" + yaml.safe_dump(
                        {"type": event.type, "object": plain(event.object)},
                        sort_keys=False, width=1 << 16), nl=False)

    try:
        trio.run(follow)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch is meant to end


def _read_command(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("resource", metavar="RESOURCE[/ID]")
    @_namespace_option
    @click.option("-l", "--selector", "labels", metavar="SELECTOR",
                  help="Label selector, e.g. 'app=web,tier!=db'.")
    @click.option("--fields", metavar="SELECTOR",
                  help="Field selector (pods: name, DesiredState.Status, DesiredState.Host).")
    @_output_option
    @click.option("-w", "--watch", is_flag=True,
                  help="Print the objects, then each change, until Ctrl-C.")
    @client_options
    def command(resource: str, namespace: str | None, labels: str | None,
                fields: str | None, fmt: OutputFormat, watch: bool, server: str,
                token: str | None, token_file: Path | None) -> None:
        with no_traceback():
            _get_or_list(resource, namespace, labels, fields, fmt, watch, server, token,
                         token_file)

    return command


get = _read_command("get", "Show one object (RESOURCE/ID) or a list (RESOURCE).")
list_ = _read_command("list", "List objects (every namespace unless --namespace).")


# -- create / update / delete ---------------------------------------------------------


@click.command("create")
@click.argument("resource", metavar="[RESOURCE]", required=False)
@_file_option
@_namespace_option
@_output_option
@client_options
def create(resource: str | None, filenames: tuple[str, ...], namespace: str | None,
           fmt: OutputFormat, server: str, token: str | None,
           token_file: Path | None) -> None:
    """Create the objects of the -f inputs and print them as stored."""
    with no_traceback():
        objects = _selected_objects(resource, filenames)
        with make_client(server, token, token_file) as client:
            for obj in objects:
                made = client.create(obj, namespace=_namespace_of(obj, namespace))
                print_objects(type(made), [made], fmt, single=True)


@click.command("update")
@click.argument("resource", metavar="[RESOURCE[/ID]]", required=False)
@_file_option
@_namespace_option
@_output_option
@client_options
def update(resource: str | None, filenames: tuple[str, ...], namespace: str | None,
           fmt: OutputFormat, server: str, token: str | None,
           token_file: Path | None) -> None:
    """Replace objects with those of the -f inputs, at their stored resourceVersion."""
    with no_traceback():
        objects = _selected_objects(resource, filenames)
        with make_client(server, token, token_file) as client:
            for obj in objects:
                ns = _namespace_of(obj, namespace)
                current = client.get(type(obj), obj.id, namespace=ns)
                obj.resource_version = current.resource_version
                done = client.update(obj, namespace=ns)
                print_objects(type(done), [done], fmt, single=True)


@click.command("delete")
@click.argument("resource", metavar="[RESOURCE/ID]", required=False)
@_file_option
@_namespace_option
@client_options
def delete(resource: str | None, filenames: tuple[str, ...], namespace: str | None,
           server: str, token: str | None, token_file: Path | None) -> None:
    """Delete RESOURCE/ID, or the objects of the -f inputs."""
    with no_traceback():
        targets: list[tuple[type[TypeMeta], str, str]] = []
        if filenames:
            targets = [(type(o), o.id, _namespace_of(o, namespace))
                       for o in _selected_objects(resource, filenames)]
        elif resource:
            model, object_id = parse_resource(resource)
            if not object_id:
                raise CliError(f"delete needs an id: {resource_name(model)}/<id>")
            targets = [(model, object_id, namespace or DEFAULT_NAMESPACE)]
        else:
            raise CliError("delete needs RESOURCE/ID or -f FILE")
        with make_client(server, token, token_file) as client:
            for model, object_id, ns in targets:
                client.delete(model, object_id, namespace=ns)
                click.echo(f"{_describe(model, object_id)} deleted")
