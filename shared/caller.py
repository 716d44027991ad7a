"""Who is calling, as the platform vouched for it: the Easy Auth principal and the client IP.

Pure: reads headers and settings, raises :class:`RelayError` (503, 401 or 403).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from shared.client_ip import client_ip_from_headers
from shared.config import Settings
from shared.easyauth import Principal, principal_from_headers
from shared.errors import easy_auth_disabled
from shared.security_context import build_security_context


@dataclass(frozen=True)
class Caller:
    principal: Principal
    source_ip: str

    def pseudonym(self, application_name: str) -> str:
        """A stable identifier of this caller in this application that is not its object ID.

        Sent as ``user``/``safety_identifier`` when a client sets either, so that
        Azure's abuse monitoring sees the authenticated caller whatever the client
        chose. Object IDs are random GUIDs, so the hash cannot be reversed by guessing.
        """
        subject = f"{application_name}\n{self.principal.tenant_id}\n{self.principal.object_id}"
        return hashlib.sha256(subject.encode()).hexdigest()[:32]

    def security_context(self, application_name: str) -> dict[str, str]:
        """The ``user_security_context`` Azure OpenAI receives for this caller."""
        return build_security_context(application_name, self.principal.object_id, self.principal.tenant_id, self.source_ip)


def identify_caller(headers: Mapping[str, str], settings: Settings) -> Caller:
    """The caller of this request.

    Without Easy Auth the identity headers could be forged, so the relay fails
    closed (503) unless the platform says Easy Auth is on.
    """
    if not settings.easy_auth_enabled:
        raise easy_auth_disabled()
    principal = principal_from_headers(headers, settings.auth_policy)
    return Caller(principal, client_ip_from_headers(headers, settings.client_ip))
