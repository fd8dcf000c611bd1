"""Which addresses a webhook may be delivered to (pure).

An endpoint URL is chosen by a user, so without a check the notifier would POST wherever it points:
a cloud metadata service (169.254.169.254), the database, anything on the deployment's private
network (SSRF). Unless private addresses are allowed (development, the tests' loopback receivers),
every address a host resolves to must be global unicast; the request then goes to the address that
was checked (the host name kept for `Host` and TLS), so DNS cannot answer differently in between.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IPAddress) -> bool:
    """True for a global unicast address; False for loopback, private, link-local, shared, reserved,
    unspecified and multicast ones (an IPv4-mapped IPv6 address is judged as its IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def first_refused(addresses: list[str]) -> str | None:
    """The first of `addresses` a webhook may not go to, or None when all may (pure)."""
    for text in addresses:
        if not is_public(ipaddress.ip_address(text.split("%", 1)[0])):
            return text
    return None
