"""A client port idle for 25 s is still answered (mitmproxy's DNS mode dropped it after 20 s).

It really waits 25 s (a quarter of the suite's time); test_server.py also checks by design
that the service keeps no per-client state.
"""

from __future__ import annotations

import socket
import time

from appliance.config.loader import Config
from appliance.dns import wire
from tests.dns import LOCALHOST, a_rdata, addresses, ask, rr, running


def test_client_port_idle_for_25_seconds_is_answered(example: Config) -> None:
    with running(example) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 3600, a_rdata("192.0.2.1")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))
            assert addresses(ask(h.port, "www.example.org", msg_id=1, sock=sock)) == ["192.0.2.1"]
            time.sleep(25)
            again = ask(h.port, "www.example.org", msg_id=1, sock=sock)  # same port, same id
            assert (again.id, addresses(again)) == (1, ["192.0.2.1"])
            assert ask(h.port, "www.instagram.com", msg_id=1, sock=sock).rcode == wire.NXDOMAIN
