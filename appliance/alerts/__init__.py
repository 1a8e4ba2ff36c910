"""Safeguarding alerts: rules over the decision log, an outbox, and delivery by email/webhook."""
