"""The proxy auto-config file for explicit-proxy mode on managed devices.

Served by the addon at ``http://<gateway address>/proxy.pac`` and ``/wpad.dat``. Local and
intranet destinations go DIRECT; everything else through the gateway's explicit port. There is
deliberately no ``; DIRECT`` fallback: a device that cannot reach the proxy must not go round it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

CONTENT_TYPE = "application/x-ns-proxy-autoconfig"
PATHS = frozenset({"/proxy.pac", "/wpad.dat"})

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALWAYS_DIRECT: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def pac_file(gateway_address: str, explicit_port: int, bypass_networks: Iterable[Network]) -> str:
    """A PAC script: DIRECT for plain host names, ``localhost`` and addresses in
    ``bypass_networks`` (plus loopback), ``PROXY gateway:port`` for everything else.

    Raises ValueError for an address or port that is not one (never writes script text from
    anything unchecked).
    """
    address = ipaddress.ip_address(gateway_address)
    if not 0 < explicit_port < 65536:
        raise ValueError(f"{explicit_port} is not a port")
    proxy = f"[{address}]:{explicit_port}" if address.version == 6 else f"{address}:{explicit_port}"
    networks = list(dict.fromkeys([*ALWAYS_DIRECT, *bypass_networks]))
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    v4_tests = "".join(
        f'\n    if (isInNet(host, "{n.network_address}", "{n.netmask}")) return "DIRECT";'
        for n in v4
    )
    v6_tests = "".join(
        f'\n    if (isInNetEx(host, "{n}")) return "DIRECT";'
        for n in v6  # isInNetEx: Chromium and Windows; others skip the IPv6 block
    )
    return f"""// LessonGate proxy auto-config: local networks DIRECT, the rest via the gateway.
function FindProxyForURL(url, host) {{
  host = host.toLowerCase();
  if (isPlainHostName(host) || host === "localhost" || dnsDomainIs(host, ".local"))
    return "DIRECT";
  if (/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {{{v4_tests}
  }}
  if (host.indexOf(":") >= 0 && typeof isInNetEx === "function") {{{v6_tests}
  }}
  return "PROXY {proxy}";
}}
"""
