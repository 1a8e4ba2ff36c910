"""The JSON API (``/api/v1``): the page's rules for scripts and other checks.

Same session cookie as the page. Unauthenticated → 401, a role that may not → 403, bad input
→ 422 ``{"error", "field", "reason"}``. Requests that change something must carry a JSON body
(``Content-Type: application/json``, which a cross-site HTML form cannot send and a cross-site
script cannot send without a CORS preflight this server never grants) and must not come from
another site by the browser's own ``Sec-Fetch-Site``/``Origin`` headers; with the
``SameSite=Strict`` cookie that is the API's CSRF protection.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from appliance.accounts.roles import STANDING_CREATORS
from appliance.accounts.store import SignInRefused
from appliance.exemptions.standing import standing_json
from appliance.policy.facts import Exemption
from appliance.web.desk import Desk, Forbidden, NotFound, Visitor
from appliance.web.http import clear_session_cookie, client_address, cross_site, set_session_cookie
from appliance.web.rules import Refused, parse_request
from appliance.web.sessions import COOKIE
from appliance.web.standing import parse_standing

MAX_BODY = 16_384


def routes(desk: Desk) -> list[BaseRoute]:
    api = Api(desk)
    return [
        Route("/api/v1/session", api.sign_in, methods=["POST"]),
        Route("/api/v1/session", api.sign_out, methods=["DELETE"]),
        Route("/api/v1/me", api.me, methods=["GET"]),
        Route("/api/v1/exemptions", api.list_exemptions, methods=["GET"]),
        Route("/api/v1/exemptions", api.create_exemption, methods=["POST"]),
        Route("/api/v1/exemptions/{ident}", api.end_exemption, methods=["DELETE"]),
        Route("/api/v1/standing", api.list_standing, methods=["GET"]),
        Route("/api/v1/standing", api.create_standing, methods=["POST"]),
        Route("/api/v1/standing/{ident}", api.end_standing, methods=["DELETE"]),
        Route("/api/{rest:path}", api.not_found),
    ]


def error(status: int, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def refused(refusal: Refused) -> JSONResponse:
    return error(
        422, f"{refusal.field}: {refusal.reason}", field=refusal.field, reason=refusal.reason
    )


def exemption_json(exemption: Exemption, zone: dt.tzinfo) -> dict[str, str]:
    """The API's form of an exemption; times in the school's zone, with their offset, to the
    second (as the store keeps them)."""
    return {
        "id": exemption.id,
        "service": exemption.service,
        "category": exemption.category,
        "scope": str(exemption.scope),
        "scope_value": exemption.scope_value,
        "start": exemption.start.astimezone(zone).isoformat(timespec="seconds"),
        "end": exemption.end.astimezone(zone).isoformat(timespec="seconds"),
        "created_by": exemption.created_by,
        "reason": exemption.reason,
        "kind": str(exemption.kind),
    }


def standing_json_in(permission: Exemption, zone: dt.tzinfo) -> dict[str, object]:
    """:func:`~appliance.exemptions.standing.standing_json`, times in the school's zone (as
    :func:`exemption_json`)."""
    return standing_json(
        replace(
            permission,
            start=permission.start.astimezone(zone).replace(microsecond=0),
            end=permission.end.astimezone(zone).replace(microsecond=0),
        )
    )


class Api:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    # -- helpers -------------------------------------------------------------------------------

    def _visitor(self, request: Request) -> Visitor | None:
        visitor, _ = self.desk.visitor(request.cookies.get(COOKIE, ""), client_address(request))
        return visitor

    async def _body(self, request: Request) -> Any:
        """The JSON body of a request that changes something, or :class:`Refused`."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise Refused("body", "must be JSON (Content-Type: application/json)")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise Refused("body", f"is too large (at most {MAX_BODY} bytes)")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as problem:
            raise Refused("body", f"is not valid JSON: {problem}") from problem

    def _cross_site(self, request: Request, visitor: Visitor | None) -> JSONResponse | None:
        if not cross_site(request):
            return None
        if visitor is not None:
            self.desk.forbidden(visitor, f"cross-site {request.method} {request.url.path}")
        return error(403, "cross-site request refused")

    async def _act(
        self,
        request: Request,
        action: Callable[[Visitor], Awaitable[Response]],
        changes: bool = True,
    ) -> Response:
        """Every route that needs a session: 401 without one, 403 for a cross-site request that
        `changes` something, then the action's answer, its refusals mapped to 403, 404 and 422."""
        visitor = self._visitor(request)
        if visitor is None:
            return error(401, "not signed in")
        denied = self._cross_site(request, visitor) if changes else None
        if denied:
            return denied
        try:
            return await action(visitor)
        except Forbidden as forbidden:
            return error(403, str(forbidden))
        except NotFound as missing:
            return error(404, str(missing))
        except Refused as refusal:
            return refused(refusal)

    # -- routes --------------------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        denied = self._cross_site(request, None)
        if denied:
            return denied
        try:
            body = await self._body(request)
            if not isinstance(body, dict):
                raise Refused("body", "must be a JSON object")
            fields = {}
            for key in ("name", "password"):
                value = body.get(key)
                if not isinstance(value, str) or not value:
                    raise Refused(key, "is required (text)")
                fields[key] = value
        except Refused as refusal:
            return refused(refusal)
        try:
            token, session = await run_in_threadpool(
                self.desk.sign_in, fields["name"], fields["password"], client_address(request)
            )
        except SignInRefused as refusal:
            if refusal.locked_until is None:
                return error(401, str(refusal))
            wait = max(1, int((refusal.locked_until - self.desk.now()).total_seconds()))
            response = error(429, str(refusal))
            response.headers["retry-after"] = str(wait)
            return response
        person = session.person
        response = JSONResponse(
            {
                "user": person.name,
                "role": person.role,
                "teacher": person.teacher,
                "display_name": person.display_name,
            }
        )
        set_session_cookie(response, self.desk, token)
        return response

    async def sign_out(self, request: Request) -> Response:
        async def sign_out(visitor: Visitor) -> Response:
            self.desk.sign_out(visitor)
            response = JSONResponse({"signed_out": True})
            clear_session_cookie(response, self.desk)
            return response

        return await self._act(request, sign_out)

    async def me(self, request: Request) -> Response:
        async def answer(visitor: Visitor) -> Response:
            person = visitor.person
            allowed = self.desk.choices(visitor)
            zone = self.desk.facts().timetable.zone
            lesson = allowed.lesson
            ends = allowed.ends.astimezone(zone).isoformat() if allowed.ends else None
            return JSONResponse(
                {
                    "user": person.name,
                    "role": person.role,
                    "teacher": person.teacher,
                    "display_name": person.display_name,
                    "lesson": {
                        "period": lesson.period,
                        "room": lesson.room,
                        "class": lesson.klass,
                        "end": ends,
                    }
                    if lesson
                    else None,
                }
            )

        return await self._act(request, answer, changes=False)

    async def list_exemptions(self, request: Request) -> Response:
        async def answer(visitor: Visitor) -> Response:
            zone = self.desk.facts().timetable.zone
            return JSONResponse(
                {"exemptions": [exemption_json(e, zone) for e in self.desk.exemptions(visitor)]}
            )

        return await self._act(request, answer, changes=False)

    async def create_exemption(self, request: Request) -> Response:
        async def create(visitor: Visitor) -> Response:
            self.desk.may_allow(visitor)  # the role first: a wrong role learns nothing more
            wanted = parse_request(await self._body(request))
            granted = self.desk.allow(visitor, wanted)
            zone = self.desk.facts().timetable.zone
            return JSONResponse(
                {**exemption_json(granted.exemption, zone), "merged": granted.merged},
                status_code=200 if granted.merged else 201,
            )

        return await self._act(request, create)

    async def end_exemption(self, request: Request) -> Response:
        async def end(visitor: Visitor) -> Response:
            ended = self.desk.end(visitor, request.path_params["ident"])
            zone = self.desk.facts().timetable.zone
            now = self.desk.now().astimezone(zone).isoformat()
            return JSONResponse({**exemption_json(ended, zone), "end": now})

        return await self._act(request, end)

    async def list_standing(self, request: Request) -> Response:
        async def answer(visitor: Visitor) -> Response:
            shown, holders = self.desk.review_standing(visitor)
            zone = self.desk.facts().timetable.zone
            return JSONResponse(
                {"standing": [standing_json_in(p, zone) for p in shown], "delegates": holders}
            )

        return await self._act(request, answer, changes=False)

    async def create_standing(self, request: Request) -> Response:
        async def create(visitor: Visitor) -> Response:
            # the role first: a wrong role learns nothing more
            self.desk.require(visitor, STANDING_CREATORS, "making a standing permission")
            made = self.desk.add_standing(visitor, parse_standing(await self._body(request)))
            return self._standing(made, 201)

        return await self._act(request, create)

    async def end_standing(self, request: Request) -> Response:
        async def end(visitor: Visitor) -> Response:
            return self._standing(self.desk.end_standing(visitor, request.path_params["ident"]))

        return await self._act(request, end)

    def _standing(self, permission: Exemption, status: int = 200) -> JSONResponse:
        """One standing permission, with who holds one now."""
        zone = self.desk.facts().timetable.zone
        holders = self.desk.standing.delegates(self.desk.now())
        return JSONResponse({**standing_json_in(permission, zone), "delegates": holders}, status)

    async def not_found(self, request: Request) -> Response:
        return error(404, f"no such API path: {request.url.path}")
