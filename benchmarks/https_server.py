"""A small, fast TLS web server for benchmarks/https.py (uvloop, one process per core).

``GET /`` answers ``hello`` (a few bytes) and closes; ``GET /bytes/<n>`` answers ``n`` bytes
(zeros, in 1 MiB writes) and closes. Several processes bind the same address and port with
SO_REUSEPORT, so the kernel spreads new connections over them. TLS 1.3 with the certificate
given (the benchmark makes it with appliance.demo.servers.make_certs); no session tickets, so
every connection is a full handshake. Prints ``ready`` once listening; runs until killed.

Run inside the simulated internet: ``ip netns exec <p>inet python -m benchmarks.https_server
serve --address 198.18.0.80 --port 443 --cert example.org.pem --key example.org.key``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from collections.abc import Sequence

import uvloop

READY = "ready"
CHUNK = memoryview(bytes(1 << 20))
HELLO = b"hello\n"
SMALL = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(HELLO), HELLO)
)
MAX_BYTES = 1 << 34  # 16 GiB: a bound on what one request may ask for


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        parts = head.split(b" ", 2)
        path = parts[1] if len(parts) > 1 else b"/"
        if path.startswith(b"/bytes/"):
            size = min(int(path[len(b"/bytes/") :]), MAX_BYTES)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size
            )
            left = size
            while left > 0:
                step = min(left, len(CHUNK))
                writer.write(CHUNK[:step])
                left -= step
                await writer.drain()
        else:
            writer.write(SMALL)
            await writer.drain()
    except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError, TimeoutError):
        pass
    except asyncio.LimitOverrunError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


def context(cert: str, key: str) -> ssl.SSLContext:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    tls.minimum_version = ssl.TLSVersion.TLSv1_3
    tls.num_tickets = 0  # no resumption: every connection is a full handshake
    return tls


async def serve(address: str, port: int, cert: str, key: str) -> None:
    server = await asyncio.start_server(
        handle, address, port, ssl=context(cert, key), reuse_port=True, backlog=4096
    )
    print(READY, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.https_server")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve")
    run.add_argument("--address", required=True)
    run.add_argument("--port", type=int, default=443)
    run.add_argument("--cert", required=True)
    run.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.address, args.port, args.cert, args.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
