"""The teachers' page: server-rendered HTML forms, no JavaScript.

Every form carries the session's CSRF token in a hidden field, checked on every POST; the
sign-in form, which comes before any session, uses a double-submit cookie instead. A POST that
succeeds redirects (303) to the page, with a message for it kept in the session; one that is
refused shows the page again at once, with the reason and what was typed.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from appliance.accounts.roles import (
    AUDIT_READERS,
    INVESTIGATION_APPROVERS,
    INVESTIGATION_READERS,
    INVESTIGATION_STARTERS,
    STANDING_CREATORS,
    STANDING_READERS,
    Role,
)
from appliance.accounts.store import SignInRefused
from appliance.exemptions.investigation import (
    DEFAULT_MINUTES,
    MAX_MINUTES,
    Investigation,
    InvestigationRefused,
    Status,
)
from appliance.exemptions.request import ExemptionRefused, lesson_end
from appliance.exemptions.standing import year_end
from appliance.policy.facts import DEVICES, Exemption, Facts, ScopeKind
from appliance.web.desk import Desk, Forbidden, NotFound, Visitor
from appliance.web.http import clear_session_cookie, client_address, set_session_cookie
from appliance.web.rules import EXEMPTERS, Refused, devices_rule, exemptible, parse_request
from appliance.web.sessions import COOKIE, Ended
from appliance.web.standing import parse_standing

TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)
SIGN_IN_COOKIE = "lessongate_sign_in"  # the sign-in form's double-submit CSRF token
NOTICES = {  # ?why= on the sign-in page: fixed texts, never echoed from the URL
    "expired": "Your session has expired. Please sign in again.",
    "signed-out": "You have signed out.",
}
LABELS = {
    "service": "Service",
    "category": "Service",
    "scope": "Where",
    "scope_value": "Where",
    "reason": "Reason",
    "minutes": "Until",
    "until": "Until",
    "body": "Form",
    "services": "Services",
    "delegate": "Who",
    "instruction": "The headteacher's instruction",
}
DEVICES_LABEL = "Devices (all internet)"  # the target DEVICES on the page
CSRF_FAILED = (
    "This form was out of date or altered, so nothing was changed (security check). "
    "Please try again."
)
MINUTES = (10, 20, 30, 45, 60)


def routes(desk: Desk) -> list[BaseRoute]:
    pages = Pages(desk)
    return [
        Route("/", pages.home, methods=["GET"]),
        Route("/sign-in", pages.sign_in_form, methods=["GET"]),
        Route("/sign-in", pages.sign_in, methods=["POST"]),
        Route("/sign-out", pages.sign_out, methods=["POST"]),
        Route("/teacher", pages.teacher, methods=["GET"]),
        Route("/exemptions", pages.allow, methods=["POST"]),
        Route("/exemptions/{ident}/end", pages.end, methods=["POST"]),
        Route("/audit", pages.audit, methods=["GET"]),
        Route("/investigations", pages.investigations, methods=["GET"]),
        Route("/investigations", pages.start_investigation, methods=["POST"]),
        Route("/investigations/{ident}/{step}", pages.investigation_step, methods=["POST"]),
        Route("/standing", pages.standing, methods=["GET"]),
        Route("/standing", pages.add_standing, methods=["POST"]),
        Route("/standing/{ident}/end", pages.end_standing, methods=["POST"]),
    ]


class _Page(Protocol):
    """A page that a refused form POST shows again, with a status and messages."""

    def __call__(
        self,
        request: Request,
        visitor: Visitor,
        status: int = 200,
        messages: list[tuple[str, str]] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Awaitable[Response]: ...


# A form POST's action: does it for the visitor with the posted form and returns the message to
# flash, or raises Forbidden, NotFound, Refused or InvestigationRefused.
Action = Callable[[Visitor, Mapping[str, str]], str]


@dataclass(frozen=True)
class Shown:
    """An exemption as the page lists it."""

    id: str
    what: str
    where: str
    until: str
    by: str
    reason: str
    can_end: bool


class Pages:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    # -- helpers -------------------------------------------------------------------------------

    def _visitor(self, request: Request) -> tuple[Visitor | None, Ended | None]:
        return self.desk.visitor(request.cookies.get(COOKIE, ""), client_address(request))

    def _to_sign_in(self, ended: Ended | None) -> RedirectResponse:
        return RedirectResponse("/sign-in?why=expired" if ended else "/sign-in", status_code=303)

    def _render(
        self,
        request: Request,
        template: str,
        visitor: Visitor | None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        messages = list(context.pop("messages", []))
        if visitor is not None:
            messages = self.desk.sessions.take_flash(visitor.session.key) + messages
        return TEMPLATES.TemplateResponse(
            request,
            template,
            {
                "school": self.desk.school_name(),
                "visitor": visitor,
                "csrf": visitor.session.csrf if visitor else "",
                "messages": messages,
                "audit_reader": visitor is not None and visitor.role in AUDIT_READERS,
                "investigation_reader": visitor is not None
                and visitor.role in INVESTIGATION_READERS,
                "standing_reader": visitor is not None and visitor.role in STANDING_READERS,
                **context,
            },
            status_code=status,
        )

    async def _form(self, request: Request, visitor: Visitor) -> Mapping[str, str] | None:
        """The posted form, or None when its CSRF token is not this session's (audited)."""
        form = await request.form()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, visitor.session.csrf):
            self.desk.forbidden(visitor, f"CSRF token mismatch on POST {request.url.path}")
            return None
        return {k: v for k, v in form.items() if isinstance(v, str)}

    async def _show(self, request: Request, page: _Page) -> Response:
        """A page for a signed-in visitor; the sign-in page for anyone else."""
        visitor, ended = self._visitor(request)
        if visitor is None:
            return self._to_sign_in(ended)
        return await page(request, visitor)

    async def _act(self, request: Request, page: _Page, action: Action, done: str) -> Response:
        """Every form POST but signing in and out: the visitor, the CSRF check, the action, then
        a redirect to `done` with the action's message, or `page` again with why it was refused
        (and, when the form was at fault, what was typed)."""
        visitor, ended = self._visitor(request)
        if visitor is None:
            return self._to_sign_in(ended)
        form = await self._form(request, visitor)
        if form is None:
            return await page(request, visitor, 403, [("error", CSRF_FAILED)])
        try:
            message = action(visitor, form)
        except Forbidden as forbidden:
            return await page(request, visitor, 403, [("error", str(forbidden))])
        except NotFound as missing:
            return await page(request, visitor, 404, [("error", f"{missing}.")])
        except Refused as refused:
            label = LABELS.get(refused.field, refused.field)
            return await page(
                request, visitor, 422, [("error", _sentence(f"{label}: {refused.reason}"))], form
            )
        except InvestigationRefused as refused:
            return await page(request, visitor, 422, [("error", _sentence(str(refused)))], form)
        self.desk.sessions.flash(visitor.session.key, "ok", message)
        return RedirectResponse(done, status_code=303)

    # -- signing in and out --------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        visitor, _ = self._visitor(request)
        return RedirectResponse("/teacher" if visitor else "/sign-in", status_code=303)

    def _sign_in_page(
        self, request: Request, status: int, messages: list[tuple[str, str]], name: str = ""
    ) -> Response:
        token = secrets.token_urlsafe(32)
        response = self._render(
            request, "sign_in.html", None, status, messages=messages, sign_in_token=token, name=name
        )
        response.set_cookie(
            SIGN_IN_COOKIE,
            token,
            path="/sign-in",
            secure=self.desk.settings.secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return response

    async def sign_in_form(self, request: Request) -> Response:
        visitor, _ = self._visitor(request)
        if visitor is not None:
            return RedirectResponse("/teacher", status_code=303)
        notice = NOTICES.get(request.query_params.get("why", ""))
        level = "error" if request.query_params.get("why") == "expired" else "ok"
        return self._sign_in_page(request, 200, [(level, notice)] if notice else [])

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        sent, kept = form.get("csrf"), request.cookies.get(SIGN_IN_COOKIE, "")
        if not (isinstance(sent, str) and kept and hmac.compare_digest(sent, kept)):
            self.desk.record(
                "",
                "",
                "access.forbidden",
                client_address(request),
                "CSRF token mismatch on POST /sign-in",
            )
            return self._sign_in_page(request, 403, [("error", CSRF_FAILED)])
        name, password = form.get("name"), form.get("password")
        if not (isinstance(name, str) and name and isinstance(password, str) and password):
            return self._sign_in_page(request, 422, [("error", "Give your name and password.")])
        try:
            token, _ = await run_in_threadpool(
                self.desk.sign_in, name, password, client_address(request)
            )
        except SignInRefused as refused:
            status = 401 if refused.locked_until is None else 429
            return self._sign_in_page(
                request, status, [("error", _sentence(str(refused)))], name[:64]
            )
        response = RedirectResponse("/teacher", status_code=303)
        set_session_cookie(response, self.desk, token)
        response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
        return response

    async def sign_out(self, request: Request) -> Response:
        visitor, ended = self._visitor(request)
        if visitor is None:
            return self._to_sign_in(ended)
        if await self._form(request, visitor) is None:
            return await self._teacher_page(request, visitor, 403, [("error", CSRF_FAILED)])
        self.desk.sign_out(visitor)
        response = RedirectResponse("/sign-in?why=signed-out", status_code=303)
        clear_session_cookie(response, self.desk)
        return response

    # -- the teacher's page --------------------------------------------------------------------

    async def teacher(self, request: Request) -> Response:
        return await self._show(request, self._teacher_page)

    async def allow(self, request: Request) -> Response:
        def allow(visitor: Visitor, form: Mapping[str, str]) -> str:
            self.desk.may_allow(visitor)  # the role first: a wrong role learns nothing more
            granted = self.desk.allow(visitor, parse_request(_request_doc(form)))
            shown = self._shown(self.desk.facts(), visitor, granted.exemption)
            verb = "still allowed, now" if granted.merged else "allowed"
            return f"{shown.what} {verb} for {shown.where} until {shown.until}."

        return await self._act(request, self._teacher_page, allow, "/teacher")

    async def end(self, request: Request) -> Response:
        def end(visitor: Visitor, _: Mapping[str, str]) -> str:
            gone = self.desk.end(visitor, request.path_params["ident"])
            shown = self._shown(self.desk.facts(), visitor, gone)
            return f"Ended: {shown.what} for {shown.where}."

        return await self._act(request, self._teacher_page, end, "/teacher")

    async def _teacher_page(
        self,
        request: Request,
        visitor: Visitor,
        status: int = 200,
        messages: list[tuple[str, str]] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        desk = self.desk
        facts = desk.facts()
        now = desk.now()
        zone = facts.timetable.zone
        allowed = desk.choices(visitor)
        slot = facts.timetable.at(now)
        try:
            default_end: dt.datetime | None = lesson_end(facts, now)
        except ExemptionRefused:
            default_end = None
        minutes = [
            m
            for m in MINUTES
            if visitor.role is not Role.TEACHER
            or (allowed.ends is not None and now + dt.timedelta(minutes=m) < allowed.ends)
        ]
        can_allow = visitor.role in EXEMPTERS and allowed.any
        if visitor.role not in EXEMPTERS:
            why_not = f"Your role ({visitor.role}) can see exemptions but not allow services."
        elif not allowed.any:
            why_not = (
                "You are not teaching a lesson now: you can allow a service during a lesson "
                "you teach."
            )
        else:
            why_not = ""
        categories = facts.services.categories
        return self._render(
            request,
            "teacher.html",
            visitor,
            status,
            messages=messages or [],
            now=now.astimezone(zone),
            period=slot.period.name if slot.period else "",
            lesson=allowed.lesson,
            lesson_ends=f"{allowed.ends.astimezone(zone):%H:%M}" if allowed.ends else "",
            default_end=f"{default_end.astimezone(zone):%H:%M}" if default_end else "",
            choices=allowed,
            can_allow=can_allow,
            why_not=why_not,
            manager=visitor.role is Role.ICT_MANAGER,
            groups=[
                (cid, categories[cid].description or cid, services)
                for cid, services in exemptible(facts).items()
            ],
            minutes=minutes,
            devices=DEVICES_LABEL if devices_rule(facts) else "",
            form=form or {},
            exemptions=[self._shown(facts, visitor, e) for e in desk.exemptions(visitor)],
        )

    def _shown(self, facts: Facts, visitor: Visitor, exemption: Exemption) -> Shown:
        services = facts.services
        if exemption.service == DEVICES:
            what = DEVICES_LABEL
        elif exemption.service:
            known = services.services.get(exemption.service)
            what = known.name if known else exemption.service
        else:
            category = services.categories.get(exemption.category)
            described = (category.description if category else "") or exemption.category
            what = f"All {described[:1].lower()}{described[1:]}"
        zone = facts.timetable.zone
        return Shown(
            id=exemption.id,
            what=what,
            where=f"{exemption.scope} {exemption.scope_value}",
            until=f"{exemption.end.astimezone(zone):%H:%M}",
            by=exemption.created_by,
            reason=exemption.reason,
            can_end=self.desk.may_end(visitor, exemption),
        )

    # -- the audit log -------------------------------------------------------------------------

    async def audit(self, request: Request) -> Response:
        visitor, ended = self._visitor(request)
        if visitor is None:
            return self._to_sign_in(ended)
        try:
            entries = self.desk.audit_entries(visitor)
        except Forbidden as forbidden:
            return await self._teacher_page(request, visitor, 403, [("error", str(forbidden))])
        zone = self.desk.facts().timetable.zone
        return self._render(
            request,
            "audit.html",
            visitor,
            entries=[(e, e.at.astimezone(zone)) for e in entries],
        )

    # -- investigation access ------------------------------------------------------------------

    async def investigations(self, request: Request) -> Response:
        return await self._show(request, self._investigations_page)

    async def start_investigation(self, request: Request) -> Response:
        def start(visitor: Visitor, form: Mapping[str, str]) -> str:
            minutes = form.get("minutes", "")
            self.desk.require(visitor, INVESTIGATION_STARTERS, "starting investigation access")
            started = self.desk.investigations.start(
                self.desk.facts(),
                form.get("subject", ""),
                case=form.get("case", "").strip(),
                reason=form.get("reason", ""),
                by=self.desk.user(visitor),
                now=self.desk.now(),
                minutes=int(minutes) if minutes.isdigit() else DEFAULT_MINUTES,
                address=visitor.address,
            )
            return (
                f"Investigation access {started.id} for {started.target} is waiting for a second "
                "person (dsl or slt) to approve it."
            )

        return await self._act(request, self._investigations_page, start, "/investigations")

    async def investigation_step(self, request: Request) -> Response:
        """approve, refuse or end one investigation."""
        ident, step = request.path_params["ident"], request.path_params["step"]
        investigations = self.desk.investigations
        steps = {
            "approve": (INVESTIGATION_APPROVERS, investigations.approve, "approved: in force"),
            "refuse": (INVESTIGATION_APPROVERS, investigations.refuse, "refused"),
            "end": (INVESTIGATION_READERS, investigations.end, "ended"),
        }

        def take(visitor: Visitor, _: Mapping[str, str]) -> str:
            if step not in steps:
                raise NotFound(f"No such step: {step}")
            roles, act, done = steps[step]
            self.desk.require(visitor, roles, f"{step} investigation access")
            act(ident, by=self.desk.user(visitor), now=self.desk.now(), address=visitor.address)
            return f"Investigation access {ident} {done}."

        return await self._act(request, self._investigations_page, take, "/investigations")

    async def _investigations_page(
        self,
        request: Request,
        visitor: Visitor,
        status: int = 200,
        messages: list[tuple[str, str]] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        try:
            self.desk.require(visitor, INVESTIGATION_READERS, "investigation access")
        except Forbidden as forbidden:
            return await self._teacher_page(request, visitor, 403, [("error", str(forbidden))])
        facts = self.desk.facts()
        now = self.desk.now()
        zone = facts.timetable.zone
        role = visitor.role
        rows = [
            _ShownInvestigation(
                i,
                i.status(now),
                f"{i.start.astimezone(zone):%a %d %b %H:%M}",
                f"{i.end.astimezone(zone):%H:%M}",
                can_decide=role in INVESTIGATION_APPROVERS
                and i.status(now) is Status.PENDING
                and i.started_by != visitor.name,
                can_end=i.status(now) in (Status.PENDING, Status.ACTIVE),
            )
            for i in self.desk.investigations.all()
        ]
        owners = sorted({d.owner for d in facts.devices if d.owner})
        return self._render(
            request,
            "investigations.html",
            visitor,
            status,
            messages=messages or [],
            can_start=role in INVESTIGATION_STARTERS,
            subjects=[d.id for d in facts.devices] + owners,
            durations=[m for m in (30, 60, 120, 240, 480) if m <= MAX_MINUTES],
            default_minutes=DEFAULT_MINUTES,
            form=form or {},
            rows=rows,
        )

    # -- standing permissions (official school accounts) ---------------------------------------

    async def standing(self, request: Request) -> Response:
        return await self._show(request, self._standing_page)

    async def add_standing(self, request: Request) -> Response:
        chosen = await self._chosen(request)

        def add(visitor: Visitor, form: Mapping[str, str]) -> str:
            doc = {
                "services": chosen,
                "delegate": form.get("delegate", ""),
                "until": form.get("until") or None,
                "reason": form.get("reason", ""),
                "instruction": form.get("instruction", ""),
            }
            self.desk.require(visitor, STANDING_CREATORS, "making a standing permission")
            shown = self._shown_standing(
                self.desk.facts(), self.desk.add_standing(visitor, parse_standing(doc))
            )
            return (
                f"{shown.services} allowed for {shown.delegate} at any time until the end of"
                f" {shown.last_day}."
            )

        return await self._act(request, self._standing_page, add, "/standing")

    async def end_standing(self, request: Request) -> Response:
        def end(visitor: Visitor, _: Mapping[str, str]) -> str:
            gone = self.desk.end_standing(visitor, request.path_params["ident"])
            shown = self._shown_standing(self.desk.facts(), gone)
            return f"Ended: {shown.services} for {shown.delegate}."

        return await self._act(request, self._standing_page, end, "/standing")

    @staticmethod
    async def _chosen(request: Request) -> list[str]:
        """The services ticked on the standing permission form (a field given many times)."""
        return [s for s in (await request.form()).getlist("services") if isinstance(s, str)]

    async def _standing_page(
        self,
        request: Request,
        visitor: Visitor,
        status: int = 200,
        messages: list[tuple[str, str]] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        try:
            shown, holders = self.desk.review_standing(visitor)
        except Forbidden as forbidden:
            return await self._teacher_page(request, visitor, 403, [("error", str(forbidden))])
        facts = self.desk.facts()
        now = self.desk.now().astimezone(facts.timetable.zone)
        end_of_year = year_end(facts)
        last_day = end_of_year - dt.timedelta(days=1) if end_of_year else None
        names = self._staff_names()
        categories = facts.services.categories
        return self._render(
            request,
            "standing.html",
            visitor,
            status,
            messages=messages or [],
            holders=holders,
            rows=[self._shown_standing(facts, p, names) for p in shown],
            can_add=visitor.role in STANDING_CREATORS,
            manager=visitor.role is Role.ICT_MANAGER,
            groups=[
                (categories[cid].description or cid, services)
                for cid, services in exemptible(facts).items()
            ],
            people=[
                (code, _named(code, names))
                for code in sorted({d.owner for d in facts.devices})
                if code
            ],
            staff_devices=[(d.id, _named(d.owner, names)) for d in facts.devices if d.owner],
            today=f"{now:%Y-%m-%d}",
            last_day=f"{last_day:%Y-%m-%d}" if last_day and last_day.date() >= now.date() else "",
            last_day_text=f"{last_day:%a %d %b %Y}" if last_day else "",
            form=form or {},
            chosen=await self._chosen(request) if form else [],
        )

    def _staff_names(self) -> dict[str, str]:
        """Teacher code → display name, from the local accounts."""
        return {u.teacher: u.display_name for u in self.desk.accounts.users() if u.teacher}

    def _shown_standing(
        self, facts: Facts, permission: Exemption, names: Mapping[str, str] | None = None
    ) -> _ShownStanding:
        names = self._staff_names() if names is None else names
        known = facts.services.services
        zone = facts.timetable.zone
        value = permission.scope_value
        if permission.scope is ScopeKind.ACCOUNT:
            delegate = f"{_named(value, names)}: all their devices"
        else:
            device = next((d for d in facts.devices if d.id == value), None)
            owner = f" ({_named(device.owner, names)})" if device and device.owner else ""
            delegate = f"device {value}{owner}"
        last = permission.end.astimezone(zone) - dt.timedelta(seconds=1)
        return _ShownStanding(
            id=permission.id,
            services=", ".join(known[s].name if s in known else s for s in permission.services),
            delegate=delegate,
            since=f"{permission.start.astimezone(zone):%d %b %Y}",
            last_day=f"{last:%a %d %b %Y}",
            by=permission.created_by,
            instruction=permission.instruction,
            reason=permission.reason,
        )


@dataclass(frozen=True)
class _ShownStanding:
    """A standing permission as the review page lists it."""

    id: str
    services: str  # their names
    delegate: str
    since: str
    last_day: str  # it ends at the end of this day
    by: str
    instruction: str
    reason: str


@dataclass(frozen=True)
class _ShownInvestigation:
    investigation: Investigation
    status: Status
    start: str
    end: str
    can_decide: bool
    can_end: bool


def _request_doc(form: Mapping[str, str]) -> dict[str, Any]:
    """The page's form in the API's words (so both go through the same checks)."""
    doc: dict[str, Any] = {"reason": form.get("reason", "")}
    kind, _, value = form.get("target", "").partition(":")
    if kind in ("service", "category") and value:
        doc[kind] = value
    scope = form.get("scope", "")
    doc["scope"] = scope
    if scope in ScopeKind.__members__.values():
        doc["scope_value"] = form.get(scope, "")
    until = form.get("until", "lesson")
    if until != "lesson":
        doc["minutes"] = int(until) if until.isdigit() else -1
    return doc


def _named(code: str, names: Mapping[str, str]) -> str:
    """``"Ms Smith (MSM)"``, or the teacher code alone when no account has it."""
    return f"{names[code]} ({code})" if names.get(code) else code


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
