"""Name checks of v0.5 (``pkg/util/validation.go``): DNS labels and subdomains, RFC 952
labels, C identifiers, port numbers. Each returns a bool and never raises; the
``*_HELP`` strings describe the rule for error messages.

The patterns match whole strings only (a trailing newline is not accepted, as Go's
``^...$`` did not accept one either).
"""

from __future__ import annotations

import re

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_DNS_SUBDOMAIN_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_DNS_952_RE = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_C_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROTOCOLS = ("TCP", "UDP")

DNS_LABEL_HELP = "lowercase letters, digits and '-', starting and ending alphanumeric, ≤ 63"
DNS_SUBDOMAIN_HELP = "DNS labels joined by '.', ≤ 253 characters"
DNS_952_HELP = "a lowercase letter, then lowercase letters, digits and '-', ≤ 24"
C_IDENTIFIER_HELP = "letters, digits and '_', not starting with a digit"


def is_dns_label(value: str) -> bool:
    """RFC 1123 label: ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63 characters."""
    return len(value) <= 63 and _DNS_LABEL_RE.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """DNS labels joined by dots, at most 253 characters (pod ids for the kubelet)."""
    return len(value) <= 253 and _DNS_SUBDOMAIN_RE.fullmatch(value) is not None


def is_dns952_label(value: str) -> bool:
    """RFC 952 label: ``[a-z]([-a-z0-9]*[a-z0-9])?``, at most 24 characters (service ids,
    label keys)."""
    return len(value) <= 24 and _DNS_952_RE.fullmatch(value) is not None


def is_c_identifier(value: str) -> bool:
    """``[A-Za-z_][A-Za-z0-9_]*`` (environment variable names); no length limit."""
    return _C_IDENTIFIER_RE.fullmatch(value) is not None


def is_valid_port(port: int) -> bool:
    """1 to 65535."""
    return 0 < port < 65536
