"""Chat completion request pieces the tests build again and again."""

from __future__ import annotations

from typing import Any


def user(text: str) -> list[dict[str, Any]]:
    """``messages`` with one user message."""
    return [{"role": "user", "content": text}]
