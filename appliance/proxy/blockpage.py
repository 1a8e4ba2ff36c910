"""The page a blocked plain-HTTP request gets (status 403): what, why, and how to ask.

Self-contained on purpose: inline CSS, no JavaScript, no images, fonts or links to anywhere
else (a blocked page must not load anything, and must not track anyone). Every value from a
request or a file is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import zoneinfo

from appliance.config.loader import School
from appliance.policy.decision import Decision, Reason

# What each blocking reason means, in the words a student or a visitor reads.
REASON_TEXT: dict[Reason, str] = {
    Reason.STUDENT_ALWAYS: (
        "Students may not use social media on the school network unless a teacher allows it "
        "for a lesson."
    ),
    Reason.GUEST_ALWAYS: "Social media is not available on the school's guest network.",
    Reason.UNKNOWN_NETWORK: (
        "This device's address is not on any network the school has set up, so social media "
        "is blocked for it, and a teacher cannot allow it."
    ),
    Reason.STAFF_LESSON_TIME: (
        "Staff may not use social media on the school network during lessons. It is available "
        "at break, at lunch and outside the school day."
    ),
    Reason.STAFF_TEACHING: (
        "Staff may not use social media on the school network during the lessons they teach."
    ),
    Reason.NEVER_EXEMPTIBLE: (
        "This site is on a list that is blocked for everyone, always. No one can allow it."
    ),
    Reason.BYPASS: (
        "This is a way round the school's filter (a private DNS service, VPN or relay). It is "
        "blocked for everyone, and attempts are recorded."
    ),
    Reason.DEVICE_IN_LESSON: (
        "Students may not use their own phones or other devices in lessons without the "
        "teacher's permission, so this network only reaches the school's learning sites during "
        "lessons. It works normally at break, at lunch and outside the school day."
    ),
    Reason.INVALID_NAME: "The address asked for is not a valid site name.",
    Reason.NO_SNI: (
        "The connection did not say which site it is for, so the school's filter cannot check "
        "it. Type the site's name rather than its address."
    ),
    # Reasons that allow: a block page never shows them, but the table is complete.
    Reason.NOT_LISTED: "This site is not restricted.",
    Reason.EXEMPTION: "A teacher has allowed this for the lesson.",
    Reason.INVESTIGATION: "Allowed for this device by the school's safeguarding team.",
    Reason.STANDING_PERMISSION: (
        "Allowed for this member of staff by the headteacher, to run an official school account."
    ),
    Reason.STAFF_OUTSIDE_LESSONS: "Staff may use social media outside lessons.",
}

# Reasons a teacher can lift for a lesson (the rest are for everyone, or not for teachers:
# decide() applies a teacher's exemption on the students' and staff networks only).
EXEMPTIBLE = frozenset({Reason.STUDENT_ALWAYS, Reason.DEVICE_IN_LESSON})

CSS = """
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1a1a1a;background:#f4f5f7}
main{max-width:36rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
.card{background:#fff;border-radius:.5rem;padding:1rem 1.25rem;margin:0 0 1rem;
border-left:.35rem solid #b3261e}
h2{font-size:1.05rem;margin:0 0 .25rem}
p{margin:0 0 .75rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}
dt{color:#555}dd{margin:0;overflow-wrap:anywhere}
footer{color:#555;font-size:.875rem}
"""


def render(
    decision: Decision,
    school: School,
    client_address: str,
    when: dt.datetime,
    *,
    service_name: str | None = None,
) -> bytes:
    """The block page for one decision, as UTF-8 HTML."""
    e = html.escape
    what = service_name or decision.service or decision.name
    local = _local(when, school.timezone)
    why = REASON_TEXT.get(decision.reason, "The school's policy blocks this site.")
    if decision.reason in EXEMPTIBLE:
        ask = (
            "If you need it for your work in this lesson, ask your teacher. Your teacher can "
            "allow it for this lesson from the LessonGate page; it works again straight away "
            "and stops at the end of the lesson."
        )
    elif decision.reason in (Reason.STAFF_LESSON_TIME, Reason.STAFF_TEACHING):
        ask = (
            "If a lesson needs it, the teacher can allow it for that lesson from the "
            "LessonGate page."
        )
    elif decision.reason is Reason.GUEST_ALWAYS:
        ask = "If you need it for school business, ask the member of staff you are visiting."
    elif decision.reason is Reason.UNKNOWN_NETWORK:
        ask = (
            "If this device should be on the school network, ask the school's ICT team to check "
            "how it is connected."
        )
    else:
        ask = "If you think this is a mistake, tell a member of staff."
    period = f" ({decision.period})" if decision.period else ""
    policy = f"{school.policy_document}, version {school.policy_version}"
    clause = school.policy_clauses.get(decision.reason)
    rule = f"{policy}, clause {clause}" if clause else policy
    rows = [
        ("Site", decision.name),
        ("Service", what if what != decision.name else "-"),
        ("Rule", rule),
        ("Reason code", str(decision.reason)),
        ("Time", local.strftime("%A %d %B %Y, %H:%M") + period),
        ("Your device", client_address),
    ]
    details = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    page = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>Blocked: {e(what)} - {e(school.name)}</title>"
        f"<style>{CSS}</style></head><body><main>"
        f"<h1>{e(what)} is blocked on the {e(school.name)} network</h1>"
        f'<div class="card"><h2>Why</h2><p>{e(why)}</p>'
        f"<p>This is part of the school's {e(rule)}.</p></div>"
        f'<div class="card"><h2>What you can do</h2><p>{e(ask)}</p></div>'
        f'<div class="card"><h2>Details</h2><dl>{details}</dl></div>'
        f"<footer><p>{e(school.name)} - LessonGate. This page loads nothing else and "
        "does not track you.</p></footer>"
        "</main></body></html>\n"
    )
    return page.encode("utf-8")


def _local(when: dt.datetime, zone: str) -> dt.datetime:
    try:
        return when.astimezone(zoneinfo.ZoneInfo(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return when.astimezone(dt.UTC)
