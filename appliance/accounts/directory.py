"""Sign-in against the school's LDAP / Active Directory, for names with no local account.

The person's own name and password are used for a simple bind (over LDAPS or StartTLS, with
the server's certificate checked), so LessonGate holds no directory password. Their groups
(``memberOf``, direct membership) are then read and mapped to a role by the ``accounts.ldap``
settings: the first mapping that names one of their groups wins; none → refused.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

import ldap3  # type: ignore[import-untyped]
from ldap3.core.exceptions import LDAPException  # type: ignore[import-untyped]
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]
from ldap3.utils.dn import escape_rdn  # type: ignore[import-untyped]

from appliance.accounts.roles import Role
from appliance.accounts.settings import Ldap

log = logging.getLogger("lessongate.accounts")

INVALID_CREDENTIALS = 49  # LDAP result code


class DirectoryError(Exception):
    """The directory gave no answer we can use; the message is for the person signing in."""


def server_for(settings: Ldap) -> Any:
    """The ldap3 Server for ``settings.url``: TLS required, the certificate checked."""
    parts = urlsplit(settings.url)
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=settings.ca_file or None,
    )
    return ldap3.Server(
        parts.hostname,
        port=parts.port,
        use_ssl=parts.scheme == "ldaps",
        tls=tls,
        connect_timeout=settings.timeout,
        get_info=ldap3.NONE,
    )


class Directory:
    def __init__(self, settings: Ldap, *, server: Any = None, strategy: str = ldap3.SYNC) -> None:
        """``server`` and ``strategy``: another ldap3 Server and client strategy (tests use
        ldap3's offline ``MOCK_SYNC``); by default, the server named in the settings."""
        self.settings = settings
        self._server = server
        self._strategy = strategy

    def authenticate(self, name: str, password: str) -> tuple[Role, str, str] | None:
        """(role, display name, teacher code) when the directory accepts ``name`` and
        ``password``; None when it does not. Raises :class:`DirectoryError` when the directory
        cannot be asked, or the person has no role here.

        ``name`` must already be a valid sign-in name (letters, digits, ``. _ -``)."""
        if not password:  # an empty password is an anonymous bind, which "succeeds"
            return None
        settings = self.settings
        connection = None
        try:
            connection = ldap3.Connection(
                self._server or server_for(settings),  # a missing CA file is reported here
                user=settings.bind_dn.format(name=escape_rdn(name)),
                password=password,
                client_strategy=self._strategy,
                receive_timeout=settings.timeout,
                read_only=True,
                raise_exceptions=False,
            )
            connection.open()
            if settings.start_tls and not connection.start_tls(read_server_info=False):
                raise DirectoryError("the school's directory refused a secure connection")
            if not connection.bind():
                if connection.result.get("result") == INVALID_CREDENTIALS:
                    return None
                log.warning("directory bind for a sign-in failed: %s", connection.result)
                raise DirectoryError("the school's directory did not answer: try again shortly")
            entry = self._entry(connection, name)
        except LDAPException as error:
            log.warning("directory unreachable: %s", error)
            raise DirectoryError(
                "the school's directory cannot be reached: try again shortly"
            ) from error
        finally:
            if connection is not None:
                connection.unbind()
        groups = _values(entry.get("memberOf"))
        role = settings.role_for(groups)
        if role is None:
            raise DirectoryError(f"{name} has no LessonGate role: ask the ICT manager")
        teacher = (
            _values(entry.get(settings.teacher_attribute)) if settings.teacher_attribute else []
        )
        display = _values(entry.get("displayName"))
        return role, display[0] if display else "", teacher[0] if teacher else ""

    def _entry(self, connection: Any, name: str) -> dict[str, Any]:
        """The signed-in person's own entry: found under the search base, or read at the
        bind DN itself."""
        settings = self.settings
        attributes = ["memberOf", "displayName"]
        if settings.teacher_attribute:
            attributes.append(settings.teacher_attribute)
        if settings.user_search_base:
            found = connection.search(
                settings.user_search_base,
                settings.user_filter.format(name=escape_filter_chars(name)),
                search_scope=ldap3.SUBTREE,
                attributes=attributes,
                size_limit=2,
            )
        else:
            found = connection.search(
                settings.bind_dn.format(name=escape_rdn(name)),
                "(objectClass=*)",
                search_scope=ldap3.BASE,
                attributes=attributes,
            )
        entries = [r for r in connection.response or () if r.get("type") == "searchResEntry"]
        if not found or len(entries) != 1:
            log.warning("directory: %d entries for a signed-in name", len(entries))
            raise DirectoryError(f"{name} was not found in the school's directory")
        attributes_found: dict[str, Any] = entries[0].get("attributes", {})
        return attributes_found


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]
