"""The service environment variables a bound pod's containers receive (section 9).

For every service (all namespaces, in key order), with ``NAME`` its id upper-cased and
``-`` turned into ``_``, ``IP`` its portal IP, ``PORT`` its port and ``proto`` its
protocol (TCP when empty)::

    NAME_SERVICE_HOST=IP
    NAME_SERVICE_PORT=PORT
    NAME_PORT=proto://IP:PORT
    NAME_PORT_<PORT>_<PROTO>=proto://IP:PORT
    NAME_PORT_<PORT>_<PROTO>_PROTO=proto
    NAME_PORT_<PORT>_<PROTO>_PORT=PORT
    NAME_PORT_<PORT>_<PROTO>_ADDR=IP
"""

from __future__ import annotations

from collections.abc import Iterable

from kubecore.api import DEFAULT_PROTOCOL, EnvVar, Service


def env_name(service_id: str) -> str:
    """``my-db`` -> ``MY_DB``."""
    return service_id.upper().replace("-", "_")


def service_env(services: Iterable[Service]) -> list[EnvVar]:
    """The variables for ``services``, in order (see the module docstring)."""
    result: list[EnvVar] = []
    for service in services:
        name = env_name(service.id)
        protocol = service.protocol or DEFAULT_PROTOCOL
        ip, port = service.portal_ip, str(service.port)
        url = f"{protocol.lower()}://{ip}:{port}"
        port_prefix = f"{name}_PORT_{port}_{protocol.upper()}"
        for key, value in (
            (f"{name}_SERVICE_HOST", ip),
            (f"{name}_SERVICE_PORT", port),
            (f"{name}_PORT", url),
            (port_prefix, url),
            (f"{port_prefix}_PROTO", protocol.lower()),
            (f"{port_prefix}_PORT", port),
            (f"{port_prefix}_ADDR", ip),
        ):
            result.append(EnvVar(name=key, value=value))
    return result
