"""The PAC file for explicit-proxy mode."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from appliance.proxy.pac import pac_file

NETWORKS = [ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("2001:db8:20::/48")]


def test_direct_for_local_networks_proxy_otherwise() -> None:
    script = pac_file("10.20.0.1", 3128, NETWORKS)
    assert 'isInNet(host, "10.20.0.0", "255.255.0.0")' in script
    assert 'isInNet(host, "127.0.0.0", "255.0.0.0")' in script
    assert 'isInNetEx(host, "2001:db8:20::/48")' in script
    assert script.rstrip().endswith('return "PROXY 10.20.0.1:3128";\n}')
    assert "; DIRECT" not in script  # no way round the proxy


def test_ipv6_gateway() -> None:
    assert 'return "PROXY [2001:db8::1]:3128";' in pac_file("2001:db8::1", 3128, [])


@pytest.mark.parametrize(
    ("address", "port"), [('10.20.0.1";alert(1);"', 3128), ("10.20.0.1", 0), ("gw.school", 3128)]
)
def test_refuses_what_is_not_an_address_and_port(address: str, port: int) -> None:
    with pytest.raises(ValueError):
        pac_file(address, port, [])


NODE_HARNESS = """
const dns = {};
function isPlainHostName(h) { return h.indexOf(".") < 0; }
function dnsDomainIs(h, d) { return h.endsWith(d); }
function isInNet(h, net, mask) {
  const n = s => s.split(".").reduce((a, b) => (a << 8 >>> 0) + Number(b), 0) >>> 0;
  return ((n(h) & n(mask)) >>> 0) === ((n(net) & n(mask)) >>> 0);
}
%s
for (const h of ["intranet", "10.20.3.4", "127.0.0.1", "www.instagram.com", "8.8.8.8",
                 "printer.local"]) {
  console.log(h + " " + FindProxyForURL("http://" + h + "/", h));
}
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the PAC script")
def test_script_runs() -> None:
    script = pac_file("10.20.0.1", 3128, NETWORKS)
    out = subprocess.run(
        ["node", "-e", NODE_HARNESS % script],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.split("\n")
    assert out[:6] == [
        "intranet DIRECT",
        "10.20.3.4 DIRECT",
        "127.0.0.1 DIRECT",
        "www.instagram.com PROXY 10.20.0.1:3128",
        "8.8.8.8 PROXY 10.20.0.1:3128",
        "printer.local DIRECT",
    ]
