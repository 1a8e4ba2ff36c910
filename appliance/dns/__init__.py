"""LessonGate's own DNS service: policy per query, cache, forwarder (see server.DnsService)."""

from appliance.dns.cache import DnsCache
from appliance.dns.server import DnsService, new_event_loop

__all__ = ["DnsCache", "DnsService", "new_event_loop"]
