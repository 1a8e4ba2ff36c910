"""The gateway enforces the policy on real traffic (issue: enforcement on the gateway)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import subprocess
import sys
import time
from functools import partial

from appliance.demo.topology import STUDENT, UPSTREAM_DNS, WEB
from appliance.firewall import nft
from appliance.firewall.neighbours import TABLE_FILE, TableFile
from appliance.policy.facts import Exemption, ScopeKind
from tests.conftest import ROOT
from tests.e2e.conftest import AFTER_SCHOOL, LUNCH, Gateway


def fake_now(gateway: Gateway) -> dt.datetime:
    """The time the gateway's processes see (the clock file runs on from its mtime)."""
    written = dt.datetime.fromisoformat(gateway.clock.read_text())
    elapsed = time.time() - gateway.clock.stat().st_mtime
    return written + dt.timedelta(seconds=elapsed)


def test_student_dns(gateway: Gateway) -> None:
    assert gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN"
    assert gateway.dns("student", "www.instagram.com")["rcode"] == "NXDOMAIN"
    allowed = gateway.dns("student", "example.org")
    assert (allowed["rcode"], allowed["answers"]) == ("NOERROR", [WEB])


def test_student_own_resolver_is_still_lessongate(gateway: Gateway) -> None:
    """DNS to any address is redirected: the student's own resolver gets our answer."""
    assert gateway.dns("student", "instagram.com", server=UPSTREAM_DNS)["rcode"] == "NXDOMAIN"
    assert gateway.dns("student", "example.org", server=UPSTREAM_DNS)["answers"] == [WEB]


def test_student_https_by_sni(gateway: Gateway) -> None:
    """A hard-coded address does not help: the name in the TLS handshake decides."""
    blocked = gateway.https("student", "instagram.com")
    assert blocked["result"] in {"closed", "reset", "refused"}, blocked
    allowed = gateway.https("student", "example.org")
    assert allowed["result"] == "ok", allowed
    assert "hello from example.org" in allowed["body"]


def test_student_http_block_page(gateway: Gateway) -> None:
    page = gateway.http("student", "www.instagram.com")
    assert page["status"] == 403, page
    assert "instagram" in page["body"].lower()
    assert "Social Media Policy" in page["body"]
    allowed = gateway.http("student", "example.org")
    assert (allowed["status"], "hello from example.org" in allowed["body"]) == (200, True)


def test_dot_and_quic_are_dropped(gateway: Gateway) -> None:
    assert gateway.probe("student", "tcp", UPSTREAM_DNS, "853")["result"] == "timeout"
    assert gateway.probe("student", "udp", WEB, "443")["result"] == "timeout"
    assert gateway.probe("staff", "tcp", UPSTREAM_DNS, "853")["result"] == "timeout"
    # Counted, by reason and group only (lessongate_firewall_dropped_packets_total).
    for group, reason in (("students", "dot"), ("students", "quic"), ("staff", "dot")):
        labels = f'group="{group}",reason="{reason}"'
        gateway.wait_until(partial(dropped, gateway, labels), 10, f"drops counted: {labels}")


def dropped(gateway: Gateway, labels: str) -> float:
    """lessongate_firewall_dropped_packets_total{labels} (in the exposition's order: by
    name), 0 when it has no such series."""
    series = f"lessongate_firewall_dropped_packets_total{{{labels}}} "
    lines = [line for line in gateway.metrics().splitlines() if line.startswith(series)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def test_students_have_no_direct_route(gateway: Gateway) -> None:
    assert gateway.probe("student", "tcp", WEB, "8443")["result"] == "timeout"


def test_staff_lesson_lunch_after_school(gateway: Gateway) -> None:
    assert gateway.https("staff", "instagram.com")["result"] != "ok"
    assert gateway.dns("staff", "instagram.com")["rcode"] == "NXDOMAIN"
    gateway.set_clock(LUNCH)
    assert gateway.dns("staff", "instagram.com")["rcode"] == "NOERROR"
    assert gateway.https("staff", "instagram.com")["result"] == "ok"
    gateway.set_clock(AFTER_SCHOOL)
    assert gateway.https("staff", "www.instagram.com")["result"] == "ok"


def test_guests_always_blocked(gateway: Gateway) -> None:
    gateway.set_clock(LUNCH)
    assert gateway.dns("guest", "instagram.com")["rcode"] == "NXDOMAIN"
    assert gateway.https("guest", "instagram.com")["result"] != "ok"
    assert gateway.https("guest", "example.org")["result"] == "ok"


def test_exemption_reaches_traffic_within_a_second_and_ends(gateway: Gateway) -> None:
    store = gateway.store()
    now = fake_now(gateway)
    granted = store.add(
        Exemption(
            id="",
            scope=ScopeKind.ROOM,
            scope_value="S12",
            start=now - dt.timedelta(minutes=1),
            end=now + dt.timedelta(seconds=6),
            service="instagram",
            created_by="MSM",
            reason="e2e",
        ),
        now,
    )
    took = gateway.wait_until(
        lambda: gateway.https("student", "instagram.com")["result"] == "ok",
        3,
        "the exemption reaches the proxy",
    )
    assert took < 1.5  # the probe itself takes ~0.2-0.4 s of the measured time
    # The DNS service re-reads the store on the supervisor's own 0.25 s beat, so it may see
    # the exemption a moment after the proxy did: within the same second, not instantly.
    gateway.wait_until(
        lambda: gateway.dns("student", "instagram.com")["rcode"] == "NOERROR",
        1.5,
        "the exemption reaches the DNS service",
    )
    gateway.wait_until(
        lambda: gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN",
        10,
        f"exemption {granted.id} ends",
    )
    assert gateway.https("student", "instagram.com")["result"] != "ok"


def test_killed_workers_fail_closed_and_come_back(gateway: Gateway) -> None:
    workers = gateway.workers()
    assert len(workers) == 3, workers  # two transparent workers and the explicit one
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    failed = gateway.https("student", "example.org")
    assert failed["result"] != "ok", failed  # refused by the gateway, never routed around it
    assert gateway.probe("student", "tcp", WEB, "443")["result"] != "connected"
    restarted = gateway.wait_until(
        lambda: len(set(gateway.workers()) - set(workers)) == 3,
        5,
        "the supervisor restarts all three workers",
    )
    assert restarted < 5
    # mitmproxy then takes a few seconds to start listening (longer on a loaded machine).
    gateway.wait_until(
        lambda: gateway.https("student", "example.org")["result"] == "ok",
        20,
        "allowed traffic flows again",
    )
    assert "died (exit -9); students and guests fail closed" in gateway.log.read_text()


def test_killed_dns_worker_fails_closed_and_comes_back(gateway: Gateway) -> None:
    """The DNS worker is a process of its own: killed, no student gets an answer from
    anywhere but LessonGate (their port 53 goes to it, and nothing else listens there), and
    the supervisor starts another."""
    (killed,) = gateway.dns_workers()
    os.kill(killed, signal.SIGKILL)
    while_down = gateway.dns("student", "instagram.com", server=UPSTREAM_DNS)
    assert while_down["result"] != "answered" or while_down["rcode"] == "NXDOMAIN", while_down
    restarted = gateway.wait_until(
        lambda: bool(gateway.dns_workers()) and killed not in gateway.dns_workers(),
        5,
        "the supervisor restarts the DNS worker",
    )
    assert restarted < 5
    gateway.wait_until(
        lambda: gateway.dns("student", "example.org").get("rcode") == "NOERROR",
        20,
        "students' DNS answers again",
    )
    assert gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN"
    assert "dns died (exit -9); students and guests fail closed" in gateway.log.read_text()


def test_metrics_on_loopback(gateway: Gateway) -> None:
    gateway.dns("student", "tiktok.com")
    text = gateway.metrics()
    assert "lessongate_decisions_total{" in text
    assert 'reason="student-always"' in text
    assert 'lessongate_component_up{component="dns"} 1.0' in text
    assert "10.20.12.101" not in text  # no client addresses in metrics, ever


def test_the_workers_copy_of_the_neighbour_table_has_the_clients(gateway: Gateway) -> None:
    """The supervisor reads the gateway's neighbour table (pyroute2) and keeps a copy in the
    state directory, from which the DNS and proxy workers know a client's MAC."""
    mac = gateway.net.mac(gateway.net.student)
    copy = TableFile(gateway.state / TABLE_FILE)
    gateway.dns("student", "example.org")  # the gateway has talked to the student lately
    gateway.wait_until(
        lambda: copy().get(ipaddress.ip_address(STUDENT)) == mac, 15, "the student's MAC"
    )


def test_stable_ten_times(gateway: Gateway) -> None:
    """The core of the suite, ten times in a row: any flake is a failure."""
    for round_number in range(10):
        assert gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN", round_number
        assert gateway.https("student", "instagram.com")["result"] != "ok", round_number
        assert gateway.https("student", "example.org")["result"] == "ok", round_number
        assert gateway.http("student", "instagram.com")["status"] == 403, round_number


def test_a_bad_policy_never_replaces_the_running_one(gateway: Gateway) -> None:
    """SIGHUP with a broken timetable: rejected with its errors, the running policy stays."""
    timetable = gateway.config / "timetable.yaml"
    good = timetable.read_text()
    try:
        timetable.write_text(good.replace('end: "09:50"', 'end: "25:00"', 1))
        gateway.process.send_signal(signal.SIGHUP)
        gateway.wait_until(
            lambda: "lessongate_policy_last_reload_success 0.0" in gateway.metrics(),
            5,
            "the supervisor refuses the reload",
        )
        assert 'timetable.yaml:days.monday[1].end: "25:00" is not a time' in gateway.log.read_text()
        assert gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN"
        assert gateway.https("student", "example.org")["result"] == "ok"
    finally:
        timetable.write_text(good)
    gateway.wait_until(
        lambda: "lessongate_policy_last_reload_success 1.0" in gateway.metrics(),
        5,
        "the good file is taken again",
    )


LISTENER = """
import socket, sys
with socket.create_server((sys.argv[1], 443)) as server:
    print("listening", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(2)
            try:
                print("received", conn.recv(4096), flush=True)
            except OSError as error:
                print("error", error, flush=True)
"""
TUNNEL = """
import socket, sys
with socket.create_connection((sys.argv[1], 443), 3) as s:
    s.sendall(b"SSH-2.0-" + sys.argv[2].encode() + b"\\r\\n")
    s.settimeout(3)
    try:
        print("reply", s.recv(64))
    except OSError as error:
        print("error", error)
"""


def test_cleartext_on_443_follows_the_no_sni_rule(gateway: Gateway) -> None:
    """SSH or a VPN on port 443 (neither TLS nor HTTP) carries no name: students' is never
    relayed to the server; staff's is (the example school's staff no_sni: allow)."""
    listener = gateway.net.popen(
        gateway.net.inet,
        [sys.executable, "-u", "-c", LISTENER, UPSTREAM_DNS],  # a free port 443 out there
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "listening"
        for role in ("student", "guest"):
            tried = gateway.net.run(
                gateway.net.client_ns(role), [sys.executable, "-c", TUNNEL, UPSTREAM_DNS, role]
            )
            assert "reply b'SSH" not in tried.stdout, tried
        staff = gateway.net.run(
            gateway.net.client_ns("staff"), [sys.executable, "-c", TUNNEL, UPSTREAM_DNS, "staff"]
        )
        assert staff.returncode == 0, staff.stderr
        # The listener heard staff's line and nothing before it: the others never got through.
        assert listener.stdout.readline().strip() == "received b'SSH-2.0-staff\\r\\n'"
    finally:
        listener.kill()
        listener.wait(5)
    wanted = ('group="students"', 'reason="no-sni"', 'verdict="block"', 'via="tcp"')
    gateway.wait_until(
        lambda: any(
            line.startswith("lessongate_decisions_total{") and all(x in line for x in wanted)
            for line in gateway.metrics().splitlines()
        ),
        5,
        "the students' cleartext counted as a no-SNI block:\n"
        + "\n".join(x for x in gateway.metrics().splitlines() if "decisions_total{" in x),
    )


def test_a_reload_brings_the_firewall_up_to_date(gateway: Gateway) -> None:
    """A changed policy's ruleset is applied on reload (here: one more DoH address to drop),
    and the running one comes back with the policy."""
    school = gateway.config / "school.yaml"
    good = school.read_text()
    doh = "192.0.2.153"

    def live() -> str:
        return nft.show(gateway.net.gw)

    assert doh not in live()
    try:
        school.write_text(good.replace("gateway:\n", f"gateway:\n  doh_addresses: [{doh}]\n", 1))
        gateway.wait_until(lambda: doh in live(), 10, "the new DoH address in the live ruleset")
    finally:
        school.write_text(good)
    gateway.wait_until(lambda: doh not in live(), 10, "the policy's own ruleset again")
    assert gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN"


IDLE_AND_REUSE = """
import socket, sys, time
sys.path.insert(0, sys.argv[2])
from tests.dns import query_bytes
from scapy.layers.dns import DNS
router = sys.argv[1]

def ask(sock, name, ident):
    sock.sendto(query_bytes(name, 1, ident), (router, 53))
    reply = DNS(sock.recv(4096))
    assert reply.id == ident and reply.qd[0].qname.decode().rstrip(".") == name, reply.summary()
    return reply

with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.settimeout(5)
    sock.bind(("0.0.0.0", 0))
    first = ask(sock, "example.org", 1)
    assert first.rcode == 0 and first.ancount == 1, first.summary()
    # A reused message id never gets another name's answer.
    for i in range(50):
        name = ("www.instagram.com", "example.org")[i % 2]
        reply = ask(sock, name, 7)
        assert reply.rcode == (3 if i % 2 == 0 else 0), (name, reply.rcode)
    time.sleep(25)  # the same port, idle for 25 s
    again = ask(sock, "example.org", 1)
    assert again.rcode == 0 and again.ancount == 1, again.summary()
    assert ask(sock, "www.instagram.com", 1).rcode == 3
print("answered")
"""

FUZZ = """
import random, socket, sys
sys.path.insert(0, sys.argv[3])
from scapy.all import fuzz, raw
from scapy.layers.dns import DNS, DNSQR
from tests.proxy.hellos import ssl_hello
router, web = sys.argv[1], sys.argv[2]
rng = random.Random(2026)
allowed = 0
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.settimeout(1)
    for i in range(10_000):
        udp.sendto(raw(fuzz(DNS(qd=DNSQR(qname="www.instagram.com")))), (router, 53))
    try:
        while True:  # whatever came back: never an answer for the blocked name
            reply = udp.recv(65535)
            try:
                parsed = DNS(reply)
                allowed += any(b"instagram" in bytes(rr.rrname) for rr in (parsed.an or []))
            except Exception:
                pass
    except TimeoutError:
        pass
hello = ssl_hello("www.instagram.com")
relayed = 0
for i in range(60):
    data = bytearray(hello[: rng.randrange(1, len(hello))] if i % 3 != 1 else hello)
    if i % 3:  # corrupt the record, handshake and random, never the name itself
        for _ in range(rng.randrange(1, 6)):
            spot = rng.randrange(min(len(data), 43))
            data[spot] = rng.randrange(256)
    with socket.create_connection((web, 443), 3) as s:
        s.sendall(bytes(data))
        s.settimeout(0.5)
        try:
            reply = s.recv(4096)
        except (TimeoutError, ConnectionResetError):
            reply = b""
        relayed += len(reply) > 0  # the server answered: the connection was relayed
print("allowed", allowed, "relayed", relayed)
"""


def test_dns_through_the_gateway_idle_port_reused_ids_and_fuzz(gateway: Gateway) -> None:
    """Through the gateway from the students' network: a port idle for 25 s is answered, a
    reused message id never gets another name's answer; meanwhile 10,000 fuzzed DNS messages
    (scapy) and 60 truncated or corrupted ClientHellos for a blocked name: no crash, no
    allow."""
    ns, router = gateway.net.student, "10.20.0.1"
    idle = gateway.net.popen(
        ns,
        [sys.executable, "-c", IDLE_AND_REUSE, router, str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fuzzed = gateway.net.run(
            ns, [sys.executable, "-c", FUZZ, router, WEB, str(ROOT)], timeout=120
        )
        assert fuzzed.stdout.strip() == "allowed 0 relayed 0", fuzzed.stderr
        out, err = idle.communicate(timeout=60)
        assert (idle.returncode, out.strip()) == (0, "answered"), err
    finally:
        idle.kill()
    assert gateway.https("student", "example.org")["result"] == "ok"
    assert gateway.https("student", "instagram.com")["result"] != "ok"
    assert gateway.process.poll() is None


def test_garbage_tls_and_dns_are_never_allowed(gateway: Gateway) -> None:
    """Random bytes where a ClientHello or a DNS query should be: no crash, no allow."""
    script = (
        "import os, socket\n"
        "for i in range(200):\n"
        "    with socket.create_connection(('198.18.0.80', 443), 2) as s:\n"
        "        s.sendall(os.urandom(1 + i * 7))\n"
        "        s.settimeout(2)\n"
        "        try:\n"
        "            assert b'hello from' not in s.recv(4096)\n"
        "        except (TimeoutError, ConnectionResetError):\n"
        "            pass\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for i in range(2000):\n"
        "    u.sendto(os.urandom(i % 300), ('10.20.0.1', 53))\n"
        "print('sent')\n"
    )
    result = gateway.net.run(gateway.net.student, [sys.executable, "-c", script])
    assert result.stdout.strip() == "sent", result.stderr
    assert gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN"
    assert gateway.https("student", "example.org")["result"] == "ok"
    assert gateway.process.poll() is None
