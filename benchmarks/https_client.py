"""The load generator of benchmarks/https.py: new TLS connections, one stream, one probe.

Runs inside a client namespace (``ip netns exec <p>student python -m benchmarks.https_client``);
prints one JSON object.

- ``conns``: ``--concurrency`` connection loops on uvloop, from ``--start-at`` (a wall-clock
  time, so several processes start together) for ``--seconds``. Each connection: TCP connect,
  full TLS 1.3 handshake with the SNI ``--name``, ``GET /``, read to EOF, close. Counted by how it
  ended within the window: ``ok`` (HTTP 200), ``refused`` (closed or reset before the handshake
  completed: what LessonGate does to a blocked name), ``timeout``, ``other``. The certificate
  chain is not verified here (``probe`` does that); the handshake signature still is.
- ``stream``: one connection, ``GET /bytes/<n>``, read the body with a 1 MiB buffer; the time
  from connect to the last byte.
- ``probe``: one connection verified against ``--ca`` (the real server's certificate, so
  passthrough is really passthrough); exit 0 when the result is ``--expect``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

import uvloop

REQUEST = b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"


def insecure() -> ssl.SSLContext:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    return tls


async def one(address: str, port: int, name: str, tls: ssl.SSLContext, timeout: float) -> str:
    """One new connection; how it ended: ok, refused, timeout or other."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(
                    address, port, ssl=tls, server_hostname=name
                )
            except (ConnectionError, ssl.SSLError, EOFError):
                return "refused"
            writer.write(REQUEST % name.encode())
            data = await reader.read()
            return "ok" if data.startswith(b"HTTP/1.1 200") else "other"
    except TimeoutError:
        return "timeout"
    except (OSError, ssl.SSLError):
        return "other"
    finally:
        if writer is not None:
            writer.transport.abort()  # the server closed first; no close_notify round trip


async def conns(args: argparse.Namespace) -> dict[str, Any]:
    tls = insecure()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    start = loop.time()
    end = start + args.seconds
    counts = {"ok": 0, "refused": 0, "timeout": 0, "other": 0}
    latencies: list[float] = []

    async def worker() -> None:
        while loop.time() < end:
            began = loop.time()
            outcome = await one(args.address, args.port, args.name, tls, args.timeout)
            finished = loop.time()
            if finished <= end:
                counts[outcome] += 1
                latencies.append(finished - began)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    latencies.sort()
    return {
        **counts,
        "seconds": args.seconds,
        "cpu_seconds": time.process_time() - cpu,
        "latencies_ms": [round(x * 1000, 3) for x in latencies[:: max(1, len(latencies) // 2000)]],
    }


def stream(args: argparse.Namespace) -> dict[str, Any]:
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    began = time.perf_counter()
    cpu = time.process_time()
    with (
        socket.create_connection((args.address, args.port), timeout=args.timeout) as raw,
        insecure().wrap_socket(raw, server_hostname=args.name) as conn,
    ):
        conn.sendall(
            b"GET /bytes/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % (args.bytes, args.name.encode())
        )
        head = b""
        while b"\r\n\r\n" not in head:
            got = conn.recv(65536)
            if not got:
                break
            head += got
        _, _, body = head.partition(b"\r\n\r\n")
        received = len(body)
        while n := conn.recv_into(view):
            received += n
    seconds = time.perf_counter() - began
    return {
        "bytes": received,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "ok": head.startswith(b"HTTP/1.1 200") and received == args.bytes,
    }


def probe(args: argparse.Namespace) -> dict[str, Any]:
    tls = ssl.create_default_context(cafile=args.ca) if args.ca else insecure()
    try:
        with (
            socket.create_connection((args.address, args.port), timeout=args.timeout) as raw,
            tls.wrap_socket(raw, server_hostname=args.name) as conn,
        ):
            conn.sendall(REQUEST % args.name.encode())
            data = b""
            while got := conn.recv(65536):
                data += got
    except TimeoutError:
        return {"result": "timeout"}
    except ssl.SSLCertVerificationError as error:
        return {"result": "bad-certificate", "error": str(error)}
    except (ConnectionError, ssl.SSLError, EOFError) as error:
        return {"result": "refused", "error": str(error)}
    except OSError as error:
        return {"result": "other", "error": str(error)}
    return {"result": "ok" if data.startswith(b"HTTP/1.1 200") else "other"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.https_client")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("conns", "stream", "probe"):
        command = commands.add_parser(name)
        command.add_argument("address")
        command.add_argument("--port", type=int, default=443)
        command.add_argument("--name", required=True)
        command.add_argument("--timeout", type=float, default=5.0)
    commands.choices["conns"].add_argument("--seconds", type=float, default=10.0)
    commands.choices["conns"].add_argument("--start-at", type=float, default=0.0)
    commands.choices["conns"].add_argument("--concurrency", type=int, default=16)
    commands.choices["stream"].add_argument("--bytes", type=int, default=200_000_000)
    commands.choices["probe"].add_argument("--ca", default="")
    commands.choices["probe"].add_argument("--expect", default="ok")
    args = parser.parse_args(argv)
    if args.command == "conns":
        result = uvloop.run(conns(args))
    elif args.command == "stream":
        result = stream(args)
    else:
        result = probe(args)
    print(json.dumps(result))
    if args.command == "probe":
        return 0 if result["result"] == args.expect else 1
    return 0 if args.command == "conns" or result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
