"""Key Vault's secrets as the emulator keeps them: versions per name, newest last."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field

_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


@dataclass(frozen=True)
class SecretVersion:
    version: str
    value: str
    created: int


@dataclass
class SecretStore:
    secrets: dict[str, list[SecretVersion]] = field(default_factory=dict)

    def set(self, name: str, value: str) -> SecretVersion:
        version = SecretVersion(uuid.uuid4().hex, value, int(time.time()))
        self.secrets.setdefault(name, []).append(version)
        return version

    def get(self, name: str, version: str | None = None) -> SecretVersion | None:
        versions = self.secrets.get(name, [])
        if version is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name))
