"""Unit tests share one process: what a test changes process-wide is put back."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _switch_interval() -> Iterator[None]:
    """shared.azure_monitor.AzureMonitor shortens the interpreter's switch interval for the process it runs in."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)
