"""What the page and the API do, without HTTP: sign in and out, find who is asking, list,
allow and end exemptions — each step checked, and written to the audit log.

One ``Desk`` per web process. It holds the policy (a :class:`PolicyState` over the config
directory and the exemption store, so a changed configuration is picked up after validation,
as in the data path), the account store, the audit log and the sessions. New exemptions are
written to the same store the data path reads: they are in force there within a second.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from appliance.accounts.audit import AuditEntry, AuditLog
from appliance.accounts.roles import (
    AUDIT_READERS,
    INVESTIGATION_READERS,
    STANDING_CREATORS,
    STANDING_READERS,
    Role,
    describe,
)
from appliance.accounts.store import ACCOUNTS_FILE, AccountStore, SignInRefused, User, open_store
from appliance.alerts.config import RuleName
from appliance.config.loader import load
from appliance.exemptions.investigation import Investigations
from appliance.exemptions.lessons import Actor, LessonExemptions
from appliance.exemptions.request import Grant
from appliance.exemptions.standing import StandingPermissions, StandingRefused, delegates
from appliance.monitoring import metrics
from appliance.policy.facts import Exemption, Facts, ScopeKind
from appliance.runtime.clock import Clock, SystemClock
from appliance.runtime.state import PolicyState
from appliance.web.rules import EXEMPTERS, Choices, Refused, Request, choices, grant
from appliance.web.sessions import SESSIONS_FILE, Ended, Person, Session, SessionStore
from appliance.web.settings import WebSettings
from appliance.web.standing import StandingRequest, refusal


class Forbidden(Exception):
    """Signed in, but not allowed to do this; the message says who may."""


class NotFound(Exception):
    """No such thing (or no longer running)."""


@dataclass(frozen=True)
class Visitor:
    """A signed-in person making a request, from an address."""

    session: Session
    role: Role
    address: str

    @property
    def person(self) -> Person:
        return self.session.person

    @property
    def name(self) -> str:
        return self.session.person.name

    @property
    def actor(self) -> Actor:
        return Actor(self.name, str(self.role), self.address)


class Desk:
    def __init__(
        self,
        config_dir: Path,
        state_dir: Path | None,
        clock: Clock | None = None,
        accounts: AccountStore | None = None,
    ) -> None:
        """``state_dir``: None for the configuration's own (``gateway.state_dir``);
        ``accounts``: the account store (default: the state directory's, with the configured
        directory and lockout; tests give one with a cheaper password hash)."""
        config = load(config_dir)  # loaded once: a million-name list is ~130 MB a copy
        self.state_dir = state_dir = state_dir or Path(config.gateway.state_dir)
        self.policy = PolicyState(config_dir, state_dir, clock or SystemClock(), config=config)
        assert self.policy.store is not None
        self.store = self.policy.store
        self.settings: WebSettings = config.web
        self.accounts = accounts or open_store(state_dir, config.accounts)
        self.audit = AuditLog(state_dir / ACCOUNTS_FILE)
        self.sessions = SessionStore(
            state_dir / SESSIONS_FILE,
            idle=self.settings.idle_timeout,
            lifetime=self.settings.session_lifetime,
        )
        zone = config.facts.timetable.zone
        self.lessons = LessonExemptions(self.store, self.audit, zone)
        self.investigations = Investigations(
            self.store,
            self.audit,
            state_dir,
            zone,
            lambda: self.policy.config.alerts.recipient_of(RuleName.INVESTIGATION),
        )
        self.standing = StandingPermissions(self.store, self.audit)

    def close(self) -> None:
        self.sessions.close()
        self.audit.close()
        self.accounts.close()
        self.store.close()

    def now(self) -> dt.datetime:
        return self.policy.now()

    def facts(self) -> Facts:
        """The current policy facts (a changed, valid configuration is picked up here)."""
        self.policy.refresh()
        return self.policy.facts

    def school_name(self) -> str:
        return self.policy.config.school.name

    # -- signing in and out --------------------------------------------------------------------

    def sign_in(self, name: str, password: str, address: str) -> tuple[str, Session]:
        """(the cookie's token, the session), or :class:`SignInRefused` (audited either way)."""
        now = self.now()
        try:
            user = self.accounts.authenticate(name, password, address=address, now=now)
        except SignInRefused as refused:
            self.record(name[:64], "", "session.refused", address, str(refused), now)
            metrics.WEB_SIGN_INS.labels(
                "refused" if refused.locked_until is None else "locked"
            ).inc()
            raise
        token, session = self.sessions.create(_person(user), now, address)
        metrics.WEB_SIGN_INS.labels("ok").inc()
        self.record(user.name, user.role, "session.create", address, "", now)
        return token, session

    def sign_out(self, visitor: Visitor) -> None:
        self.sessions.delete(visitor.session.key)
        self.record(visitor.name, visitor.role, "session.end", visitor.address, "", self.now())

    def visitor(self, token: str, address: str) -> tuple[Visitor | None, Ended | None]:
        """Who holds this session cookie, or None and why (None: no such session)."""
        if not token:
            return None, None
        session, ended = self.sessions.get(token, self.now())
        if session is None:
            return None, ended
        local = self.accounts.get(session.person.name)
        if local is not None and local.disabled:  # a directory account has no local row
            self.sessions.end_user(local.name)
            return None, None
        return Visitor(session, Role(session.person.role), address), None

    # -- exemptions ----------------------------------------------------------------------------

    def choices(self, visitor: Visitor) -> Choices:
        return choices(self.facts(), visitor.role, visitor.person.teacher, self.now())

    def exemptions(self, visitor: Visitor) -> tuple[Exemption, ...]:
        """The exemptions running now or later that this person sees: a teacher those they
        made and those for their lesson now; everyone else all of them."""
        now = self.now()
        running = self.store.current(now)
        if visitor.role is not Role.TEACHER:
            return running
        mine = self.choices(visitor)
        devices = {d.id for d in mine.devices}
        return tuple(
            e
            for e in running
            if e.created_by == visitor.name
            or (e.scope is ScopeKind.ROOM and e.scope_value in mine.rooms)
            or (e.scope is ScopeKind.CLASS and e.scope_value in mine.classes)
            or (e.scope is ScopeKind.DEVICE and e.scope_value in devices)
        )

    def may_end(self, visitor: Visitor, exemption: Exemption) -> bool:
        return visitor.role is Role.ICT_MANAGER or (
            visitor.role is Role.TEACHER and exemption.created_by == visitor.name
        )

    def may_allow(self, visitor: Visitor) -> None:
        """:class:`Forbidden` (audited) unless this person's role may allow services."""
        self.require(visitor, EXEMPTERS, "allowing a service")

    def allow(self, visitor: Visitor, request: Request) -> Grant:
        """Make (or extend) an exemption; :class:`Forbidden` or :class:`Refused` otherwise."""
        self.may_allow(visitor)
        now = self.now()
        try:
            asked = grant(
                self.facts(), visitor.role, visitor.person.teacher, visitor.name, request, now
            )
        except Refused as refused:
            why = f"{refused.field}: {refused.reason}"
            self.lessons.refused(request.target, why, visitor.actor, now)
            raise
        return self.lessons.allow(asked, visitor.actor, now)

    def end(self, visitor: Visitor, ident: str) -> Exemption:
        """End a running exemption now; :class:`Forbidden` (the role first: a wrong role learns
        nothing more) or :class:`NotFound` otherwise."""
        self.require(visitor, EXEMPTERS, "ending an exemption")
        now = self.now()
        found = next((e for e in self.store.current(now) if e.id == ident), None)
        if found is None:
            raise NotFound(f"no running exemption {ident}")
        if not self.may_end(visitor, found):
            self.forbidden(visitor, f"end exemption {ident}")
            raise Forbidden(
                f"Only the ICT manager or whoever allowed it ({found.created_by}) can end {ident}."
            )
        self.lessons.end(ident, by=visitor.name, actor=visitor.actor, now=now)
        return found

    # -- investigation access ------------------------------------------------------------------

    def user(self, visitor: Visitor) -> User:
        """The person as :class:`~appliance.exemptions.investigation.Investigations` wants
        them (it checks their role again)."""
        person = visitor.person
        return User(person.name, visitor.role, person.teacher, person.display_name)

    def require(self, visitor: Visitor, roles: frozenset[Role], what: str) -> None:
        """:class:`Forbidden` (audited) unless the person has one of ``roles``."""
        if visitor.role not in roles:
            self.forbidden(visitor, what)
            raise Forbidden(
                f"{what[:1].upper()}{what[1:]} is for {describe(roles)}; "
                f"you are signed in as {visitor.role}."
            )

    def may_read_investigations(self, visitor: Visitor) -> bool:
        return visitor.role in INVESTIGATION_READERS

    # -- standing permissions (official school accounts) ---------------------------------------

    def review_standing(self, visitor: Visitor) -> tuple[tuple[Exemption, ...], int]:
        """The standing permissions in force and the number of delegates holding one, for a
        reader (:class:`Forbidden` otherwise); audited as ``standing.list``."""
        self.require(visitor, STANDING_READERS, "reviewing standing permissions")
        shown = self.standing.review(by=self.user(visitor), now=self.now(), address=visitor.address)
        return shown, delegates(shown)

    def add_standing(self, visitor: Visitor, wanted: StandingRequest) -> Exemption:
        """A new standing permission; :class:`Forbidden` for a role that may not, or
        :class:`Refused` with the field at fault (the model audits both the step and a
        refusal)."""
        self.require(visitor, STANDING_CREATORS, "making a standing permission")
        facts, now = self.facts(), self.now()
        try:
            return self.standing.add(
                facts,
                wanted.delegate,
                wanted.services,
                reason=wanted.reason,
                by=self.user(visitor),
                now=now,
                until=wanted.until,
                instruction=wanted.instruction,
                address=visitor.address,
            )
        except StandingRefused as refused:
            raise refusal(facts, wanted, now, refused) from refused

    def end_standing(self, visitor: Visitor, ident: str) -> Exemption:
        """End a standing permission now; :class:`Forbidden` or :class:`NotFound` otherwise."""
        self.require(visitor, STANDING_CREATORS, "ending a standing permission")
        try:
            return self.standing.end(
                ident, by=self.user(visitor), now=self.now(), address=visitor.address
            )
        except StandingRefused as refused:
            raise NotFound(f"no standing permission {ident} in force") from refused

    # -- the audit log -------------------------------------------------------------------------

    def audit_entries(self, visitor: Visitor, limit: int = 200) -> tuple[AuditEntry, ...]:
        self.require(visitor, AUDIT_READERS, "the audit log")
        return self.audit.entries(limit=limit)

    def forbidden(self, visitor: Visitor, what: str) -> None:
        self.record(visitor.name, visitor.role, "access.forbidden", visitor.address, what)

    def record(
        self,
        actor: str,
        role: str,
        action: str,
        address: str,
        detail: str = "",
        now: dt.datetime | None = None,
    ) -> None:
        self.audit.append(
            actor=actor,
            role=str(role),
            action=action,
            now=now or self.now(),
            address=address,
            detail=detail,
        )


def _person(user: User) -> Person:
    return Person(user.name, str(user.role), user.teacher, user.display_name)
