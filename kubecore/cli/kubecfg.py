"""kubecfg's replication-controller verbs: ``run``, ``resize``, ``stop``, ``rm``.

- ``run IMAGE REPLICAS NAME [-p 8080:80,53] [-s PORT]`` (also ``run-container``)
  creates the replication controller ``NAME`` (selector and labels ``name=NAME``, one
  container named lowercase(NAME) with those ports) and, with ``-s``, the service
  ``NAME`` on that port selecting ``name=NAME``. ``run`` without positional arguments
  still starts kubecore itself (:class:`RunDispatch` tells the two apart).
- ``resize RC N`` sets the desired replicas (read-modify-write at the stored
  resourceVersion, retried on a conflict); ``stop RC`` is ``resize RC 0``.
- ``rm RC`` deletes the controller, only once its desired replicas are 0.

``--wait`` (run, resize, stop) polls until the controller's pods number N and, when
any minion is registered, all are ``Running``; progress goes to stderr; after
``--timeout`` seconds the command fails with exit status 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from kubecore.api import (
    DEFAULT_NAMESPACE,
    POD_RUNNING,
    POD_TERMINATED,
    Container,
    ContainerManifest,
    Minion,
    Pod,
    PodState,
    PodTemplate,
    Port,
    ReplicationController,
    ReplicationControllerState,
    Service,
    is_dns_label,
)
from kubecore.cli.output import FORMATS, OutputFormat, print_objects
from kubecore.cli.resources import CliError, client_options, make_client, no_traceback
from kubecore.client import ApiError, Client

CONFLICT_RETRIES = 5
POLL_INTERVAL = 0.5
DEFAULT_WAIT_TIMEOUT = 120.0

_namespace_option = click.option("-n", "--namespace", default=DEFAULT_NAMESPACE,
                                 show_default=True, metavar="NS", help="Namespace.")
_wait_option = click.option("--wait", is_flag=True,
                            help="Wait until the pods exist (and run, if any minion does).")
_timeout_option = click.option("--timeout", type=click.FloatRange(min=0),
                               default=DEFAULT_WAIT_TIMEOUT, show_default=True,
                               help="Seconds --wait may take before failing.")


def resize_rc(client: Client, name: str, replicas: int, namespace: str) -> ReplicationController:
    """Set ``name``'s desired replicas, retrying when another writer got in between."""
    for attempt in range(CONFLICT_RETRIES):
        rc = client.get(ReplicationController, name, namespace=namespace)
        rc.desired_state.replicas = replicas
        try:
            return client.update(rc, namespace=namespace)
        except ApiError as exc:
            if exc.code != 409 or attempt == CONFLICT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _count(client: Client, rc: ReplicationController, namespace: str) -> tuple[int, int]:
    """(pods counted, of which running): pods matching the selector, finished ones
    left out as the replication manager does."""
    pods = client.list(Pod, namespace=namespace, labels=rc.desired_state.replica_selector).items
    live = [p for p in pods if p.current_state.status != POD_TERMINATED]
    return len(live), sum(p.current_state.status == POD_RUNNING for p in live)


def wait_for_replicas(client: Client, name: str, replicas: int, namespace: str,
                      timeout: float) -> None:
    """Poll until ``name`` has ``replicas`` pods (all Running if any minion exists);
    raises :class:`CliError` after ``timeout`` seconds."""
    tty = sys.stderr.isatty()
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        rc = client.get(ReplicationController, name, namespace=namespace)
        need_running = bool(client.list(Minion).items)
        count, running = _count(client, rc, namespace)
        done = count == replicas and (not need_running or running == count)
        line = (f"{name}: {count}/{replicas} pods" +
                (f", {running} running" if need_running else ""))
        if line != last:
            if tty:
                click.echo(f"\r\x1b[2K{line}", err=True, nl=False)
            else:
                click.echo(line, err=True)
            last = line
        if done:
            if tty:
                click.echo("", err=True)
            return
        if time.monotonic() >= deadline:
            if tty:
                click.echo("", err=True)
            state = f"{count} of {replicas} pods" + (
                f" ({running} running)" if need_running else "")
            raise CliError(f"timed out after {timeout:g}s waiting for replicationController "
                           f"{name}: {state}")
        time.sleep(min(POLL_INTERVAL, max(deadline - time.monotonic(), 0.0)))


@click.command("resize")
@click.argument("name")
@click.argument("replicas", type=click.IntRange(min=0))
@_namespace_option
@_wait_option
@_timeout_option
@client_options
def resize(name: str, replicas: int, namespace: str, wait: bool, timeout: float,
           server: str, token: str | None, token_file: Path | None) -> None:
    """Set replication controller NAME's desired replicas to REPLICAS."""
    with no_traceback(), make_client(server, token, token_file) as client:
        resize_rc(client, name, replicas, namespace)
        click.echo(f"replicationControllers/{name} resized to {replicas}")
        if wait:
            wait_for_replicas(client, name, replicas, namespace, timeout)


@click.command("stop")
@click.argument("name")
@_namespace_option
@_wait_option
@_timeout_option
@client_options
def stop(name: str, namespace: str, wait: bool, timeout: float, server: str,
         token: str | None, token_file: Path | None) -> None:
    """Resize replication controller NAME to 0 (its pods are then removed)."""
    with no_traceback(), make_client(server, token, token_file) as client:
        resize_rc(client, name, 0, namespace)
        click.echo(f"replicationControllers/{name} stopped")
        if wait:
            wait_for_replicas(client, name, 0, namespace, timeout)


@click.command("rm")
@click.argument("name")
@_namespace_option
@client_options
def rm(name: str, namespace: str, server: str, token: str | None,
       token_file: Path | None) -> None:
    """Delete replication controller NAME; it must have been stopped first."""
    with no_traceback(), make_client(server, token, token_file) as client:
        rc = client.get(ReplicationController, name, namespace=namespace)
        if rc.desired_state.replicas != 0:
            raise CliError(f"replicationControllers/{name} still wants "
                           f"{rc.desired_state.replicas} replicas; stop it first "
                           f"(kubecore stop {name})")
        client.delete(ReplicationController, name, namespace=namespace)
        click.echo(f"replicationControllers/{name} deleted")


def parse_ports(spec: str) -> list[Port]:
    """kubecfg's ``-p``: comma-separated ``hostPort:containerPort`` or ``containerPort``."""
    ports: list[Port] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, _, container = item.rpartition(":")
        try:
            host_port = int(host) if host else 0
            container_port = int(container)
        except ValueError:
            raise CliError(f"invalid port {item!r}: expected [HOSTPORT:]CONTAINERPORT") from None
        if not 0 < container_port < 65536 or not 0 <= host_port < 65536:
            raise CliError(f"invalid port {item!r}: ports are 1-65535")
        ports.append(Port(host_port=host_port, container_port=container_port))
    return ports


def controller_for(
    image: str, replicas: int, name: str, ports: list[Port]
) -> ReplicationController:
    """The replication controller kubecfg's ``run`` creates."""
    labels = {"name": name}
    container = Container(name=name.lower(), image=image, ports=ports)
    manifest = ContainerManifest(version="v1beta1", containers=[container])
    return ReplicationController(
        id=name,
        labels=dict(labels),
        desired_state=ReplicationControllerState(
            replicas=replicas,
            replica_selector=dict(labels),
            pod_template=PodTemplate(desired_state=PodState(manifest=manifest),
                                     labels=dict(labels)),
        ),
    )


@click.command("run-container")
@click.argument("image")
@click.argument("replicas", type=click.IntRange(min=0))
@click.argument("name")
@click.option("-p", "--ports", "port_spec", default="", metavar="PORTS",
              help="Container ports, e.g. '8080:80,53' (hostPort:containerPort or port).")
@click.option("-s", "--service-port", type=click.IntRange(min=0, max=65535), default=0,
              help="Also create service NAME on this port selecting name=NAME.")
@_namespace_option
@click.option("-o", "--output", "fmt", type=click.Choice(FORMATS),
              default="table", show_default=True, help="Output format.")
@_wait_option
@_timeout_option
@client_options
def run_container(image: str, replicas: int, name: str, port_spec: str, service_port: int,
                  namespace: str, fmt: OutputFormat, wait: bool, timeout: float, server: str,
                  token: str | None, token_file: Path | None) -> None:
    """Run REPLICAS copies of IMAGE under replication controller NAME."""
    with no_traceback():
        if not is_dns_label(name):
            raise CliError(f"invalid name {name!r}: must be a DNS label "
                           f"(lowercase letters, digits and '-', at most 63)")
        ports = parse_ports(port_spec)
        with make_client(server, token, token_file) as client:
            rc = client.create(controller_for(image, replicas, name, ports),
                               namespace=namespace)
            print_objects(ReplicationController, [rc], fmt, single=True)
            if service_port:
                service = Service(id=name, port=service_port, labels={"name": name},
                                  selector={"name": name})
                made = client.create(service, namespace=namespace)
                print_objects(Service, [made], fmt, single=True)
            if wait:
                wait_for_replicas(client, name, replicas, namespace, timeout)


class RunDispatch(click.Command):
    """``run``: kubecore's own ``run`` (start the components) when the first argument is
    an option or absent, kubecfg's ``run IMAGE REPLICAS NAME`` when it is not.

    The two never overlap: kubecore's ``run`` takes no positional arguments.
    """

    def __init__(self, serve: click.Command, container: click.Command) -> None:
        super().__init__(
            "run",
            help=("Run kubecore (no positional arguments; see `run --help`), or, as "
                  "kubecfg, `run IMAGE REPLICAS NAME [-p PORTS] [-s PORT]` "
                  "(= run-container)."),
            short_help="Run kubecore, or `run IMAGE REPLICAS NAME` as kubecfg.",
            add_help_option=False,
        )
        self.serve = serve
        self.container = container

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        target = self.container if args and not args[0].startswith("-") else self.serve
        return target.make_context(info_name, args, parent=parent, **extra)
