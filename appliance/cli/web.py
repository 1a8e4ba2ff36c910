"""``lessongate web``: the teachers' page and the JSON API, over HTTPS.

``lessongate run`` starts it too (unless ``--no-web``), as a child process it restarts like the
proxy workers; run on its own it serves the same state directory, so an exemption made here
reaches a running data path within a second.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.cli.identity import add_config_arguments
from appliance.config.errors import Checker
from appliance.config.gateway import Endpoint, endpoint
from appliance.web.settings import DEFAULT_PORT


def add_parser(commands: Any) -> None:
    web = commands.add_parser("web", help="serve the teachers' page and the JSON API (HTTPS)")
    add_config_arguments(web)
    web.add_argument(
        "--listen", type=_listen, metavar="ADDR:PORT", help="default: web.listen (0.0.0.0:8443)"
    )
    web.add_argument(
        "--clock", type=Path, metavar="FILE", help="read the time from FILE (tests and demos)"
    )
    web.add_argument("--netns", default="", help="serve inside this network namespace")
    web.set_defaults(run=_web)


def _listen(text: str) -> Endpoint:
    check = Checker("--listen")
    found = endpoint(check, text, "", DEFAULT_PORT)
    if found is None:
        raise argparse.ArgumentTypeError(f'"{text}" is not ADDRESS:PORT (e.g. 127.0.0.1:8443)')
    return found


def _web(args: argparse.Namespace) -> int:
    from appliance.web.server import serve

    return serve(
        args.config.resolve(),
        args.state.resolve() if args.state else None,
        clock_file=args.clock.resolve() if args.clock else None,
        listen=args.listen,
        netns=args.netns,
    )
