"""The callers the tests share: object and tenant IDs as Entra issues them (lower-case ASCII GUIDs)."""

from __future__ import annotations

# Ada: the ordinary caller, in the resource tenant.
ADA_OID = "1b2c3d4e-0000-4000-8000-000000000003"
ADA_TID = "72f988bf-0000-4000-8000-000000000002"
# Another user of Ada's tenant.
OTHER_OID = "99999999-0000-4000-8000-000000000009"
# Mallory: a caller who forges or borrows an identity.
MALLORY_OID = "99999999-9999-4999-8999-999999999999"
