"""``lessongate alerts test|pending``: check the alert channels, see what waits in the outbox.

``test`` sends one test alert to every configured recipient on each of its channels, now and
directly (not through the outbox), and reports each; it exits 1 when any failed. ``pending``
lists the alerts not yet delivered on every channel, with the attempts and the last error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from typing import Any

from appliance.alerts.config import TEST_RULE
from appliance.alerts.delivery import DeliveryFailed
from appliance.alerts.message import stamp
from appliance.alerts.outbox import ALERTS_FILE, Delivery, Outbox
from appliance.cli.identity import add_config_arguments, open_config
from appliance.config.loader import load


def add_parser(commands: Any) -> None:
    alerts = commands.add_parser("alerts", help="safeguarding alerts").add_subparsers(
        required=True, metavar="COMMAND"
    )
    test = alerts.add_parser("test", help="send a test alert to every recipient, per channel")
    add_config_arguments(test)
    test.set_defaults(run=_test)
    pending = alerts.add_parser("pending", help="alerts not yet delivered on every channel")
    add_config_arguments(pending)
    pending.set_defaults(run=_pending)


def _test(args: argparse.Namespace) -> int:
    # Imported here: the service imports the metrics, which must wait for `lessongate run` to
    # set PROMETHEUS_MULTIPROC_DIR (every subcommand's module is imported at start-up).
    from appliance.alerts.service import SENDERS

    config = load(args.config)
    alerts = config.alerts
    now = dt.datetime.now(dt.UTC)
    zone = config.facts.timetable.zone
    routes = alerts.routes()
    if not any(routes.values()):
        print("no recipients with a configured channel (alerts.recipients, alerts.email/webhook)")
        return 1
    failures = 0
    for role, channels in routes.items():
        for channel in channels:
            delivery = Delivery(
                alert_id=0,
                uid=str(uuid.uuid4()),
                channel=channel,
                rule=TEST_RULE,
                recipient=role,
                subject=f"LessonGate {config.school.name}: test alert",
                body=(
                    f"A test of LessonGate's safeguarding alerts for {role}, sent by"
                    f" `lessongate alerts test` at {stamp(now, zone)}. Nothing happened."
                ),
                created=now,
                attempts=0,
            )
            where = ", ".join(alerts.recipients[role].email) if channel == "email" else "webhook"
            try:
                SENDERS[channel](delivery, alerts, config.school.id, now)
            except DeliveryFailed as error:
                failures += 1
                print(f"{role} {channel} ({where}): FAILED: {error}")
                continue
            print(f"{role} {channel} ({where}): sent, alert id {delivery.uid}")
    return 1 if failures else 0


def _pending(args: argparse.Namespace) -> int:
    config, state = open_config(args)
    zone = config.facts.timetable.zone
    routes = config.alerts.routes()
    with Outbox(state / ALERTS_FILE) as outbox:
        waiting = outbox.pending()
    if not waiting:
        print("nothing pending: every alert has been delivered")
        return 0
    for alert in waiting:
        print(
            f"{alert.id}  {alert.created.astimezone(zone):%Y-%m-%d %H:%M:%S}  {alert.rule}"
            f" → {alert.recipient}  {alert.state}  {alert.subject}"
        )
        if alert.state == "queued":
            reason = (
                "waiting for its rate limit"
                if routes.get(alert.recipient)
                else f"no channel configured for {alert.recipient}"
            )
            print(f"    {reason}")
        for channel, attempts, error in alert.channels:
            print(f"    {channel}: {attempts} attempts; last: {error or 'not tried yet'}")
    print(f"{len(waiting)} pending")
    return 0
