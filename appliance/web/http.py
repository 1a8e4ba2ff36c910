"""HTTP helpers the page and the API share: the client's address, the session cookie, and the
same-origin check for requests that change something."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from appliance.web.desk import Desk
from appliance.web.sessions import COOKIE

SAFE_FETCH_SITES = ("same-origin", "none")  # "none": typed in, or a bookmark


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def set_session_cookie(response: Response, desk: Desk, token: str) -> None:
    """``lessongate_session``: Secure, HttpOnly, SameSite=Strict, Path=/, no Max-Age (the
    server ends the session; the browser forgets the cookie when it closes)."""
    response.set_cookie(
        COOKIE,
        token,
        path="/",
        secure=desk.settings.secure_cookie,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, desk: Desk) -> None:
    response.delete_cookie(
        COOKIE, path="/", secure=desk.settings.secure_cookie, httponly=True, samesite="strict"
    )


def cross_site(request: Request) -> bool:
    """True when the browser says the request comes from another site: ``Sec-Fetch-Site``
    (sent by every current browser) or, failing that, an ``Origin`` that is not ours. A
    client that sends neither (curl, a script) is not a browser being tricked."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in SAFE_FETCH_SITES
    origin = request.headers.get("origin")
    return origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}"
