"""Serving the app over HTTPS with Uvicorn (`lessongate web`; a child of `lessongate run`)."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from appliance.config.gateway import Endpoint
from appliance.runtime.clock import clock_for
from appliance.web.app import create_app
from appliance.web.tls import certificate_files

log = logging.getLogger("lessongate.web")


def serve(
    config_dir: Path,
    state_dir: Path | None,
    *,
    clock_file: Path | None = None,
    listen: Endpoint | None = None,
    netns: str = "",
) -> int:
    """Serve until SIGTERM or SIGINT. ``state_dir``: None for the configuration's;
    ``netns``: bind inside that network namespace."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if netns:
        from pyroute2 import netns as namespaces

        namespaces.setns(netns)
    app = create_app(config_dir, state_dir, clock_for(clock_file))
    desk = app.state.desk
    settings = desk.settings
    endpoint = listen or settings.listen
    routers = [n.router for n in desk.policy.config.facts.networks if n.router is not None]
    if not endpoint.address.is_unspecified:
        routers.append(endpoint.address)
    certificate, key = certificate_files(
        config_dir, settings.certificate, settings.key, desk.state_dir, routers
    )
    log.info("teachers' page on https://%s/ (certificate %s)", endpoint, certificate)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=str(endpoint.address),
            port=endpoint.port,
            ssl_certfile=str(certificate),
            ssl_keyfile=str(key),
            server_header=False,
            proxy_headers=False,  # the client's address is the socket's: no proxy in front
            access_log=False,  # the audit log records what matters, with the address
            log_level="info",
        )
    )
    server.run()
    return 0
