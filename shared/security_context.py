"""The ``user_security_context`` the relay adds to every upstream request.

Schema: https://aka.ms/TP4AI/Documentation/EndUserContext (Defender for Cloud, "end-user context").

Built only from the instance's configuration and the identity and IP the
platform vouched for: never from anything in the caller's body.
"""

from __future__ import annotations


def build_security_context(
    application_name: str,
    end_user_id: str | None,
    end_user_tenant_id: str | None,
    source_ip: str | None,
) -> dict[str, str]:
    """Missing values are omitted, never sent empty."""
    fields = {
        "application_name": application_name,
        "end_user_id": end_user_id,
        "end_user_tenant_id": end_user_tenant_id,
        "source_ip": source_ip,
    }
    return {name: value for name, value in fields.items() if value}
