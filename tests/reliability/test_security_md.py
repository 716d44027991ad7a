"""SECURITY.md names, for every threat, tests that exist."""

from __future__ import annotations

import re

from tests.support.servers import ROOT

THREATS = [
    "Forged identity",
    "Spoofed client IP",
    "Smuggled",
    "Easy Auth misconfiguration",
    "Key and token leakage",
    "Cost abuse",
    "SSRF",
    "Log injection",
    "Incident response",
    "Parking invocations",
]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def test_every_threat_maps_to_tests_that_exist() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    assert [next(t for t in THREATS if s.startswith(f"{THREATS.index(t) + 1}. {t}")) for s in sections[: len(THREATS)]] == THREATS
    # Every test named anywhere on the page exists (the item-by-item review too); every threat names one.
    for index, section in enumerate(sections):
        path: str | None = None
        named = 0
        for match in REFERENCE.finditer(section):
            path = match.group(1) or path
            assert path is not None, section[:60]
            source = (ROOT / path).read_text(encoding="utf-8")
            if match.group(2):
                assert re.search(rf"def {match.group(2)}\b", source), f"{path}::{match.group(2)} does not exist"
                named += 1
        assert named or index >= len(THREATS), f"no named test for: {section.splitlines()[0]}"
