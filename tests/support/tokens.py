"""Reading tokens in tests: claims without verification, and what a leaked JWT looks like."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

# A JWT's header and payload are base64url JSON objects, so both start with "eyJ".
JWT_SHAPED = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.")


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the test only reads what it was given)."""
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))
