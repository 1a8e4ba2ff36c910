"""The web app: the teachers' page (server-rendered HTML) and the JSON API, on Starlette.

``create_app`` wires a :class:`~appliance.web.desk.Desk` to the routes of
:mod:`appliance.web.pages` and :mod:`appliance.web.api`, serves the stylesheet, and adds the
security headers to every response. The page needs no JavaScript at all, so the
Content-Security-Policy allows no script.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.accounts.store import AccountStore
from appliance.runtime.clock import Clock
from appliance.web import api, pages
from appliance.web.desk import Desk

STATIC = Path(__file__).parent / "static"

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """Adds :data:`HEADERS` to every response, and ``Cache-Control: no-store`` to everything
    but the stylesheet (pages and API answers hold a person's data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                headers["cache-control"] = "public, max-age=3600" if static else "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    config_dir: Path,
    state_dir: Path | None,
    clock: Clock | None = None,
    accounts: AccountStore | None = None,
) -> Starlette:
    """The app over a config directory and a state directory (``state_dir``, ``clock``,
    ``accounts``: see :class:`~appliance.web.desk.Desk`)."""
    desk = Desk(config_dir, state_dir, clock, accounts)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        desk.close()

    app = Starlette(
        routes=[
            *pages.routes(desk),
            *api.routes(desk),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(SecurityHeaders)
    app.state.desk = desk
    return app
