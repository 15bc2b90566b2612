"""The ``[store_etcd]`` configuration section and endpoint parsing."""

from __future__ import annotations

from pydantic import Field, field_validator

from kubecore.config import SectionModel


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` (or ``http://host:port``, ``[::1]:2379``) -> ``(host, port)``.

    Raises :class:`ValueError` with the reason for anything else; ``https://`` is
    refused because this plugin does not configure TLS.
    """
    value = text.strip()
    if value.startswith("https://"):
        raise ValueError(f"{text!r}: TLS endpoints are not supported, use host:port")
    value = value.removeprefix("http://").rstrip("/")
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{text!r}: expected host:port")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port out of range")
    return host, port


class EtcdStoreConfig(SectionModel):
    """``[store_etcd]``: which etcd cluster holds the state, and under which prefix."""

    endpoints: list[str] = Field(
        default=["127.0.0.1:2379"],  # pydantic copies it for every instance
        min_length=1,
        description="etcd client endpoints as host:port; the next one is tried on failure",
    )
    prefix: str = Field(
        default="", description="prepended to every kubecore key (to share one etcd)"
    )
    request_timeout: float = Field(
        default=5.0, gt=0, description="seconds before a single etcd request gives up"
    )
    reconnect_delay_max: float = Field(
        default=2.0,
        gt=0,
        description="longest pause, in seconds, between reconnection attempts",
    )

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, endpoints: list[str]) -> list[str]:
        for endpoint in endpoints:
            parse_endpoint(endpoint)
        return endpoints
