"""A simulated school in network namespaces: four client networks, the gateway, "the internet".

Used by ``make demo`` and the end-to-end tests. Nothing here touches the host's own network:
every interface lives inside namespaces this module creates (veth pairs are created inside the
gateway namespace with their peer placed straight into the other namespace), and the gateway has
no default route, so no packet can leave the simulated school.

Namespaces (``<p>`` is the instance's short unique prefix, e.g. ``lg3f9a``)::

    <p>student  eth0 10.20.12.101/16   room S12: the example school's registered iPad
                default via 10.20.0.1
    <p>staff    eth0 10.30.1.1/16      MSM's laptop (a staff member)
                default via 10.30.0.1
    <p>guest    eth0 10.40.0.9/16      a visitor's phone
                default via 10.40.0.1
    <p>byod     eth0 10.22.12.50/16    a student's own phone on the BYOD Wi-Fi, in room S12
                default via 10.22.0.1
    <p>gw       students 10.20.0.1/16  ↔ <p>student eth0   (the students' router)
                staff    10.30.0.1/16  ↔ <p>staff eth0     (the staff router)
                guests   10.40.0.1/16  ↔ <p>guest eth0     (the guests' router)
                devices  10.22.0.1/16  ↔ <p>byod eth0      (the BYOD Wi-Fi's router)
                wan      198.18.0.1/24 ↔ <p>inet eth0      (towards "the internet")
                net.ipv4.ip_forward=1 (only here); no default route
    <p>inet     eth0 198.18.0.2/24, plus
                198.18.0.53  the upstream DNS resolver (dnsmasq: :meth:`SchoolNet.start_dnsmasq`)
                198.18.0.80  web server one (appliance.demo.servers: HTTP :80, TLS :443)
                198.18.0.81  web server two
                default via 198.18.0.1 (back into the school)

198.18.0.0/15 is the benchmarking range (RFC 2544): never routed on the internet. ``lo`` is up
in every namespace. Processes started with :meth:`SchoolNet.popen` are killed on destroy.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pyroute2 import netns

from appliance.firewall.netlink import create_netns, in_netns

PREFIX = "lg"  # every SchoolNet namespace name starts with this
OWNERS = Path("/run/lessongate-demo")  # <prefix>.pid: the process that owns a SchoolNet

STUDENT = "10.20.12.101"
STAFF = "10.30.1.1"
GUEST = "10.40.0.9"
BYOD = "10.22.12.50"
STUDENTS_ROUTER, STAFF_ROUTER, GUESTS_ROUTER = "10.20.0.1", "10.30.0.1", "10.40.0.1"
BYOD_ROUTER = "10.22.0.1"
GATEWAY_WAN = "198.18.0.1"
INTERNET = "198.18.0.2"
UPSTREAM_DNS = "198.18.0.53"
WEB = "198.18.0.80"
WEB2 = "198.18.0.81"
WAN_INTERFACE = "wan"  # the gateway's interface towards inet


@dataclass(frozen=True)
class Client:
    """A client namespace: its role, its address and the gateway side of its link."""

    role: str  # student, staff, guest, byod
    address: str
    prefixlen: int
    router: str
    gateway_interface: str


CLIENTS = (
    Client("student", STUDENT, 16, STUDENTS_ROUTER, "students"),
    Client("staff", STAFF, 16, STAFF_ROUTER, "staff"),
    Client("guest", GUEST, 16, GUESTS_ROUTER, "guests"),
    Client("byod", BYOD, 16, BYOD_ROUTER, "devices"),
)


class TopologyError(RuntimeError):
    """The simulated school could not be built (not root, no ``ip``, a name taken...)."""


class SchoolNet:
    """The simulated school; ``with SchoolNet() as net:`` builds it and always tears it down."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"{PREFIX}{secrets.token_hex(2)}"
        if not self.prefix.isalnum() or len(self.prefix) > 8:
            raise TopologyError(f'prefix "{self.prefix}" must be 1-8 letters and digits')
        self.gw = f"{self.prefix}gw"
        self.inet = f"{self.prefix}inet"
        self.student = f"{self.prefix}student"
        self.staff = f"{self.prefix}staff"
        self.guest = f"{self.prefix}guest"
        self.byod = f"{self.prefix}byod"
        self.workdir: Path | None = None
        self._processes: list[subprocess.Popen[Any]] = []
        self._built = False

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.gw, self.inet, self.student, self.staff, self.guest, self.byod)

    def client_ns(self, role: str) -> str:
        """``student`` / ``staff`` / ``guest`` / ``byod`` → that client's namespace name."""
        return {
            "student": self.student,
            "staff": self.staff,
            "guest": self.guest,
            "byod": self.byod,
        }[role]

    # -- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.build()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.destroy()

    def build(self) -> Self:
        """Create the namespaces, links, addresses and routes (~0.1 s). Cleans up on failure."""
        if os.geteuid() != 0:
            raise TopologyError("building network namespaces needs root")
        if shutil.which("ip") is None:
            raise TopologyError("ip is not installed (apt-get install iproute2)")
        taken = set(self.namespaces) & set(netns.listnetns())
        if taken:
            raise TopologyError(f"network namespaces already exist: {', '.join(sorted(taken))}")
        self._built = True
        try:
            OWNERS.mkdir(parents=True, exist_ok=True)
            (OWNERS / f"{self.prefix}.pid").write_text(f"{os.getpid()}\n")
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
            for name in self.namespaces:
                create_netns(name)
            self._wire()
            # Set in every namespace, not inherited: a new namespace may copy the host's value.
            for name in self.namespaces:
                forward = "1" if name == self.gw else "0"
                self.run(name, ["sysctl", "-qw", f"net.ipv4.ip_forward={forward}"], check=True)
        except BaseException:
            self.destroy()
            raise
        return self

    def _wire(self) -> None:
        def gateway(gw: Any) -> None:
            for client in CLIENTS:
                _veth(gw, client.gateway_interface, self.client_ns(client.role))
                _up(gw, client.gateway_interface, (client.router, client.prefixlen))
            _veth(gw, WAN_INTERFACE, self.inet)
            _up(gw, WAN_INTERFACE, (GATEWAY_WAN, 24))
            _up(gw, "lo")

        in_netns(self.gw, gateway)
        for client in CLIENTS:
            in_netns(self.client_ns(client.role), partial(_wire_client, client))
        in_netns(self.inet, _wire_internet)

    def destroy(self) -> None:
        """Kill what was started here, remove the namespaces (and so their veths). Idempotent."""
        for process in self._processes:
            stop_process(process)
        self._processes.clear()
        if self._built:
            _remove_namespaces(self.namespaces)
            (OWNERS / f"{self.prefix}.pid").unlink(missing_ok=True)
            self._built = False
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # -- processes in the namespaces -------------------------------------------------------------

    def run(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in namespace ``ns`` to completion (text mode, output captured)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 30)
        check = bool(kwargs.pop("check", False))
        return subprocess.run(["ip", "netns", "exec", ns, *argv], check=check, **kwargs)

    def popen(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a server in namespace ``ns``; it is killed on :meth:`destroy`."""
        process = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)
        self._processes.append(process)
        return process

    def start_dnsmasq(
        self, records: Mapping[str, str], *, address: str = UPSTREAM_DNS
    ) -> subprocess.Popen[Any]:
        """The "upstream" resolver in inet: answers ``records`` (name → IPv4), refuses the rest.

        ``--address=/name/ip`` also answers every subdomain of ``name``; other names are
        REFUSED (there is no upstream). Its log: ``workdir/dnsmasq.log``.
        """
        if shutil.which("dnsmasq") is None:
            raise TopologyError("dnsmasq is not installed (apt-get install dnsmasq-base)")
        workdir = self.require_workdir()
        pidfile = workdir / "dnsmasq.pid"
        pidfile.unlink(missing_ok=True)
        argv = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--listen-address={address}",
            "--bind-interfaces",
            "--port=53",
            f"--pid-file={pidfile}",
            f"--log-facility={workdir / 'dnsmasq.log'}",
            "--log-queries",
            *(f"--address=/{name}/{ip}" for name, ip in sorted(records.items())),
        ]
        process = self.popen(self.inet, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while not pidfile.exists():  # dnsmasq writes its pid file after binding its sockets
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise TopologyError(f"dnsmasq exited ({process.returncode}): {stderr.strip()}")
            if time.monotonic() > deadline:
                raise TopologyError("dnsmasq did not start within 5 s")
            time.sleep(0.01)
        return process

    def mac(self, ns: str) -> str:
        """The MAC address of ``eth0`` in a client's namespace (as the gateway sees it)."""
        return in_netns(ns, _eth0_mac)

    def ping(self, ns: str, address: str, *, timeout: float = 1.0) -> bool:
        """One ICMP echo from ``ns`` to ``address``, answered within ``timeout`` seconds.

        A raw socket in Python (root), so it needs no iputils-ping.
        """
        done = self.run(ns, [_python(), "-c", _PING, address, str(timeout)], timeout=timeout + 10)
        return done.returncode == 0

    def tcp_connects(self, ns: str, address: str, port: int, *, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from ``ns`` to ``address:port`` completes within timeout."""
        code = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(({address!r}, {port}), timeout={timeout}).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        return self.run(ns, [_python(), "-c", code], timeout=timeout + 10).returncode == 0

    def require_workdir(self) -> Path:
        """The temporary directory of this instance (logs, certificates); gone on destroy."""
        if self.workdir is None:
            raise TopologyError("the school network is not built")
        return self.workdir


def cleanup_stale(prefix: str = PREFIX, *, force: bool = False) -> list[str]:
    """Remove leftover SchoolNet namespaces (``<p>gw``, ``<p>inet``...) starting with ``prefix``.

    Only those whose owning process (``/run/lessongate-demo/<p>.pid``) has gone or was never
    recorded, so a parallel run is left alone, unless ``force``. Processes still running inside
    them are killed by pid. Returns the namespaces removed.
    """
    stale: list[str] = []
    for name in sorted(netns.listnetns()):
        if not name.startswith(prefix) or not name.endswith(_ROLES):
            continue  # not a SchoolNet namespace (<prefix><role>): someone else's
        owner = _owner(name)
        if force or owner is None or not _alive(owner):
            stale.append(name)
    _remove_namespaces(stale)
    for marker in OWNERS.glob(f"{prefix}*.pid") if OWNERS.is_dir() else ():
        pid = _read_pid(marker)
        if force or pid is None or not _alive(pid):
            marker.unlink(missing_ok=True)
    return stale


# -- helpers ---------------------------------------------------------------------------------------

_ROLES = ("gw", "inet", "student", "staff", "guest", "byod")

_PING = """
import os, select, socket, struct, sys, time
target, timeout = sys.argv[1], float(sys.argv[2])
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
ident = os.getpid() & 0xFFFF
header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
payload = b"lessongate"
packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, 1) + payload
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
    s.sendto(packet, (target, 0))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        data, (source, _) = s.recvfrom(2048)
        icmp = data[(data[0] & 0x0F) * 4 :]
        if source == target and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            sys.exit(0)
sys.exit(1)
"""


def _python() -> str:
    return sys.executable


def _veth(ipr: Any, name: str, peer_ns: str) -> None:
    """A veth pair: ``name`` here, ``eth0`` in ``peer_ns``."""
    ipr.link("add", ifname=name, kind="veth", peer={"ifname": "eth0", "net_ns_fd": peer_ns})


def _wire_client(client: Client, ipr: Any) -> None:
    _up(ipr, "lo")
    _up(ipr, "eth0", (client.address, client.prefixlen))
    ipr.route("add", dst="0.0.0.0/0", gateway=client.router)


def _eth0_mac(ipr: Any) -> str:
    (link,) = ipr.get_links(ifname="eth0")
    return str(link.get_attr("IFLA_ADDRESS"))


def _wire_internet(ipr: Any) -> None:
    _up(ipr, "lo")
    _up(ipr, "eth0", (INTERNET, 24), (UPSTREAM_DNS, 32), (WEB, 32), (WEB2, 32))
    ipr.route("add", dst="0.0.0.0/0", gateway=GATEWAY_WAN)


def _up(ipr: Any, name: str, *addresses: tuple[str, int]) -> None:
    index = ipr.link_lookup(ifname=name)[0]
    for address, prefixlen in addresses:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    ipr.link("set", index=index, state="up")


def stop_process(process: subprocess.Popen[Any], timeout: float = 3.0) -> None:
    """Terminate, then kill if it does not go within ``timeout``; close its pipes."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _remove_namespaces(names: Sequence[str]) -> None:
    """Kill (by pid) what still runs inside, then unmount the namespaces."""
    present = set(netns.listnetns())
    for name in names:
        if name not in present:
            continue
        for pid in _pids_in(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            netns.remove(name)


def _pids_in(name: str) -> list[int]:
    done = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False, timeout=10
    )
    return [int(p) for p in done.stdout.split() if p.isdigit() and int(p) != os.getpid()]


def _owner(namespace: str) -> int | None:
    for role in _ROLES:
        if namespace.endswith(role):
            return _read_pid(OWNERS / f"{namespace.removesuffix(role)}.pid")
    return None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m appliance.demo.topology [check|cleanup]``: build, probe, tear down; or tidy."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m appliance.demo.topology")
    parser.add_argument("action", nargs="?", choices=("check", "cleanup"), default="check")
    args = parser.parse_args(argv)
    if args.action == "cleanup":
        removed = cleanup_stale()
        print(
            f"removed {len(removed)} stale namespaces"
            + (f": {' '.join(removed)}" if removed else "")
        )
        return 0
    started = time.monotonic()
    with SchoolNet() as net:
        built = time.monotonic() - started
        print(f"built {' '.join(net.namespaces)} in {built:.2f} s")
        ok = True
        for role in (client.role for client in CLIENTS):
            reached = net.ping(net.client_ns(role), INTERNET)
            ok &= reached
            print(
                f"  {role:<8} → {INTERNET} (through the gateway): {'ok' if reached else 'FAILED'}"
            )
    print("destroyed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
