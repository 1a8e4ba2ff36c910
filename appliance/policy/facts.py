"""The frozen facts decide() reads: who the clients are, what is listed, when lessons are.

Built once per policy load by :mod:`appliance.config`; exemptions are swapped in as they change.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from appliance.lists.matcher import DomainMatcher
from appliance.lists.services import ServiceIndex
from appliance.timetable.engine import Timetable

type Address = ipaddress.IPv4Address | ipaddress.IPv6Address
type Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Group(StrEnum):
    STUDENTS = "students"
    STAFF = "staff"
    GUESTS = "guests"
    UNKNOWN = "unknown"  # an address in no configured network: treated like students


class StaffRule(StrEnum):
    """When the policy blocks staff from restricted services."""

    LESSON_TIME = "lesson-time"  # any lesson period on a school day
    TEACHING_PERIODS = "teaching-periods"  # only the periods each teacher teaches


class ScopeKind(StrEnum):
    ROOM = "room"
    CLASS = "class"
    DEVICE = "device"  # a registered device's id, or an address
    ACCOUNT = "account"  # every device registered to one staff member (not for lessons)


LESSON_SCOPES = frozenset({ScopeKind.ROOM, ScopeKind.CLASS, ScopeKind.DEVICE})
# The lesson exemption's target that lifts the devices-in-lessons rule ("devices allowed this
# lesson"): ``devices@room:S12``. Stored as its service; no listed service may take this id.
DEVICES = "devices"
# The ``service`` label of a decision on a name in no list (lessongate_decisions_total): the
# label's values are the configured service ids and this, so no listed service may take it.
OTHER_SERVICE = "other"


class ExemptionKind(StrEnum):
    LESSON = "lesson"  # a teacher's, for a lesson
    INVESTIGATION = "investigation"  # safeguarding access: only once a second person approves
    STANDING = "standing"  # the headteacher's: named services for named staff, any time


class LessonRule(StrEnum):
    """What a network's devices may do in lesson periods (``networks[i].lessons``)."""

    NONE = "none"  # the group's rule alone
    BLOCK_INTERNET = "block-internet"  # nothing but always_allowed, unless a teacher allows it


@dataclass(frozen=True)
class ClientNetwork:
    name: str
    group: Group
    network: Network
    router: Address | None = None  # the gateway's own address on this network
    lessons: LessonRule = LessonRule.NONE


@dataclass(frozen=True)
class Room:
    name: str
    network: Network
    extra: tuple[Network, ...] = ()  # more subnets in the room, e.g. its BYOD access point's

    def holds(self, address: Address) -> bool:
        return address in self.network or any(address in n for n in self.extra)


@dataclass(frozen=True)
class Device:
    """A registered device: a student's tablet (with class) or a teacher's laptop (with owner)."""

    id: str
    owner: str = ""
    klass: str = ""
    mac: str = ""
    address: Address | None = None


@dataclass(frozen=True)
class Client:
    """Who is asking: an address, and the MAC when the gateway's neighbour table knows it."""

    address: Address
    mac: str = ""


@dataclass(frozen=True)
class Exemption:
    """A teacher's permission: scope (room, class or device) × service or category, for a time
    (the service :data:`DEVICES` lifts the devices-in-lessons rule instead).

    Or an investigation: every restricted service for one device or account, in force only
    once ``approved_by`` names a second person (and still never a never-exemptible category).

    Or a standing permission: ``services`` for one staff device or account, at any time, until
    its end (the headteacher's, for an official school account; ``instruction`` records the
    headteacher's written instruction when the ICT manager made it).
    """

    id: str
    scope: ScopeKind
    scope_value: str
    start: dt.datetime
    end: dt.datetime
    service: str = ""  # a service id, or
    category: str = ""  # a whole category
    created_by: str = ""
    reason: str = ""
    kind: ExemptionKind = ExemptionKind.LESSON
    case: str = ""  # an investigation's case reference, e.g. "SG-2026-014"
    approved_by: str = ""
    services: tuple[str, ...] = ()  # a standing permission's service ids
    instruction: str = ""

    def active(self, now: dt.datetime) -> bool:
        """In force at ``now``: inside its times, and, for an investigation, approved."""
        return self.start <= now < self.end and (
            self.kind is not ExemptionKind.INVESTIGATION or bool(self.approved_by)
        )


@dataclass(frozen=True)
class Facts:
    """Everything decide() needs, frozen. ``with_exemptions`` gives the next generation."""

    school_id: str
    networks: tuple[ClientNetwork, ...]
    rooms: tuple[Room, ...]
    devices: tuple[Device, ...]
    services: ServiceIndex
    timetable: Timetable
    staff_rule: StaffRule = StaffRule.LESSON_TIME
    exemptions: tuple[Exemption, ...] = ()
    # Names the devices-in-lessons rule never blocks (lists.yaml ``always_allowed``); the value
    # is where the name was listed.
    always_allowed: DomainMatcher[str] = field(default_factory=DomainMatcher, compare=False)
    _ranges: tuple[tuple[int, int, int, ClientNetwork], ...] = field(
        init=False, repr=False, compare=False
    )
    _by_mac: Mapping[str, Device] = field(init=False, repr=False, compare=False)
    _by_address: Mapping[Address, Device] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Most specific network first, so a room or a sub-range can sit inside a wider range.
        ordered = tuple(sorted(self.networks, key=lambda n: -n.network.prefixlen))
        object.__setattr__(self, "networks", ordered)
        ranges = tuple(
            (n.network.version, int(n.network.network_address), int(n.network.broadcast_address), n)
            for n in ordered
        )
        object.__setattr__(self, "_ranges", ranges)
        object.__setattr__(self, "_by_mac", {d.mac: d for d in self.devices if d.mac})
        object.__setattr__(
            self, "_by_address", {d.address: d for d in self.devices if d.address is not None}
        )

    def with_exemptions(self, exemptions: tuple[Exemption, ...]) -> Facts:
        return replace(self, exemptions=exemptions)

    def network_of(self, address: Address) -> ClientNetwork | None:
        """The most specific configured network holding ``address`` (integer compares: this is
        on every decision's path)."""
        version, value = address.version, int(address)
        for net_version, first, last, network in self._ranges:
            if net_version == version and first <= value <= last:
                return network
        return None

    def device_of(self, client: Client) -> Device | None:
        if client.mac and (device := self._by_mac.get(client.mac.lower())):
            return device
        return self._by_address.get(client.address)

    def room_of(self, address: Address) -> Room | None:
        return next((r for r in self.rooms if r.holds(address)), None)

    def room(self, name: str) -> Room | None:
        return next((r for r in self.rooms if r.name == name), None)
