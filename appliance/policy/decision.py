"""What decide() returns: a verdict and exactly why."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Verdict(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"


class Reason(StrEnum):
    """The fixed vocabulary of reasons; metrics, logs, the block page and docs use these names."""

    NOT_LISTED = "not-listed"  # allow: the name is in no listed service
    NEVER_EXEMPTIBLE = "never-exemptible"  # block: a never-exemptible category, for everyone
    INVALID_NAME = "invalid-name"  # block: not a host name at all
    BYPASS = "bypass"  # block: a way round the filter (DoH, VPN, relay), for everyone
    NO_SNI = "no-sni"  # TLS naming no server: allowed or blocked by gateway.no_sni per group
    EXEMPTION = "exemption"  # allow: a teacher's exemption covers this client and service
    INVESTIGATION = "investigation"  # allow: approved investigation access for this device
    STANDING_PERMISSION = "standing-permission"  # allow: a staff device, an official account
    DEVICE_IN_LESSON = "device-in-lesson"  # block: a lessons: block-internet network, in a lesson
    STUDENT_ALWAYS = "student-always"  # block: students, without an exemption
    GUEST_ALWAYS = "guest-always"  # block: the guest network, always
    UNKNOWN_NETWORK = "unknown-network"  # block: an address in no configured network
    STAFF_LESSON_TIME = "staff-lesson-time"  # block: staff, in a lesson period
    STAFF_TEACHING = "staff-teaching"  # block: staff, in a period they teach
    STAFF_OUTSIDE_LESSONS = "staff-outside-lessons"  # allow: staff, outside those times


class Decision(NamedTuple):
    """Immutable, like every fact here; a NamedTuple because one is built per query and a
    frozen dataclass costs ten times as much to construct."""

    name: str
    verdict: Verdict
    group: str
    reason: Reason
    service: str | None = None
    category: str | None = None
    period: str | None = None
    period_kind: str | None = None
    exemption_id: str | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW

    def as_dict(self) -> dict[str, str | None]:
        """JSON form; the keys are a contract (``lessongate check --json``)."""
        return {k: (str(v) if v is not None else None) for k, v in self._asdict().items()}
