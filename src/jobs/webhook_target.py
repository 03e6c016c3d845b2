"""Where a webhook may go: public addresses only, checked after DNS resolution and pinned for the request.

Webhook URLs come from outside (a customer's settings, an API call), so without a check a delivery is a way
to make the worker POST to things only it can reach: Redis on loopback, an admin port on the private network,
the cloud metadata service (``169.254.169.254``, ``fd00:ec2::254``). A target is refused when any address its
host resolves to is not globally routable (loopback, RFC 1918 and other private ranges, link-local,
shared/CGNAT, multicast, reserved, unspecified; IPv4-mapped IPv6 is judged as the IPv4 inside), unless that
address lies in a network the operator allowed (``JOBS_WEBHOOK_ALLOWED_NETWORKS``).

The name is resolved once, here, and the request is sent to the address that was checked (the URL's host is
kept in the ``Host`` header and, for HTTPS, as the TLS server name the certificate is verified against), so a
DNS answer that changes between the check and the connection (DNS rebinding) cannot redirect it. Redirects
are not followed (httpx's default), so a public receiver cannot bounce the request inward either. Limit: with
an HTTP proxy configured in the environment, the proxy makes the connection, to the pinned address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import HttpUrl

from src.runner import Permanent
from src.runner.redact import redact_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookTargetRefused(Permanent):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """A request to the checked address that still names the URL's host."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def pin(url: HttpUrl, allowed: Sequence[IPNetwork] = ()) -> PinnedTarget:
    """Resolve ``url``'s host, refuse it unless every address is public or allowed, and aim at the first one."""
    host = url.host or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await _resolve(host.strip("[]"), port)
    refused = [a for a in addresses if not is_public(a) and not any(a in net for net in allowed)]
    if refused:
        raise WebhookTargetRefused(
            f"{redact_url(str(url))}: {host} is {refused[0]}, not a public address "
            "(allow its network in JOBS_WEBHOOK_ALLOWED_NETWORKS if it is meant to receive webhooks)"
        )
    # IPv4 first: many hosts resolve names to IPv6 too without having an IPv6 route
    address = next((a for a in addresses if a.version == 4), addresses[0])
    import httpx2  # when the job first runs: a worker that starts makes no HTTP call yet (README "Performance")

    # the URL keeps its port, path, query and user info (which httpx sends as basic auth); only the host changes
    pinned = str(httpx2.URL(str(url)).copy_with(host=str(address)))
    default_port = port == (443 if url.scheme == "https" else 80)
    bare_host = host.strip("[]")
    headers = {"host": host if default_port else f"{host}:{port}"}
    extensions = {"sni_hostname": bare_host} if url.scheme == "https" else {}
    return PinnedTarget(pinned, headers, extensions)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        # not resolvable now; DNS may recover, so this is an ordinary (retried) error, not a refusal
        raise OSError(f"cannot resolve webhook host {host}: {e.strerror}") from None
    # the scope id of a link-local IPv6 answer ("fe80::1%eth0") does not matter to the check
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
