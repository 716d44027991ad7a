"""Fixtures for the browser and Node tests: one local host, two other-origin sites, one Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DAY_LIMIT, REQUIRED_ROLE, ControlsStack, Site, require_tools, static_site
from tests.support.servers import free_port
from tests.support.stack import Stack, run_stack


@pytest.fixture(scope="package")
def allowed_site() -> Iterator[Site]:
    """An SPA origin listed in CORS_ALLOWED_ORIGINS."""
    with static_site() as site:
        yield site


@pytest.fixture(scope="package")
def unlisted_site() -> Iterator[Site]:
    """An origin the relay does not know."""
    with static_site() as site:
        yield site


@pytest.fixture(scope="package")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory, allowed_site: Site) -> Iterator[Stack]:
    env = {"CORS_ALLOWED_ORIGINS": allowed_site.origin, "RELAY_REQUIRED_ROLES": REQUIRED_ROLE, "RELAY_STREAM_KEEPALIVE_S": "0.5", "RELAY_UPSTREAM_TIMEOUT_S": "3"}
    with run_stack(tmp_path_factory.mktemp("e2e-stack"), env) as stack:
        yield stack


@pytest.fixture(scope="package")
def controls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlsStack]:
    """A local host with the block list, a daily token budget (Azurite, started by devhost) and one upstream connection."""
    state_dir = tmp_path_factory.mktemp("e2e-controls")
    env = {
        "RELAY_REQUIRED_ROLES": REQUIRED_ROLE,
        "AZURITE_DIR": str(state_dir / "azurite"),
        "RELAY_BLOCKLIST_ENABLED": "true",
        "RELAY_BLOCKLIST_REFRESH_S": "0.5",
        "RELAY_BUDGET_USER_TOKENS_PER_MINUTE": "100000",
        "RELAY_BUDGET_USER_TOKENS_PER_DAY": str(DAY_LIMIT),
        "RELAY_UPSTREAM_CONNECTIONS": "1",
        "RELAY_BUSY_TIMEOUT_S": "0.2",
    }
    with run_stack(state_dir, env) as stack:
        yield ControlsStack(stack, state_dir / "azurite")


@pytest.fixture(scope="package")
def unreachable_tables_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A local host whose block list table cannot be reached from the start (it fails closed)."""
    env = {"RELAY_REQUIRED_ROLES": REQUIRED_ROLE, "RELAY_BLOCKLIST_ENABLED": "true", "RELAY_TABLE_ENDPOINT": f"https://127.0.0.1:{free_port()}"}
    with run_stack(tmp_path_factory.mktemp("e2e-no-tables"), env) as stack:
        yield stack


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Package scope, not session: Playwright's sync API keeps an asyncio loop running in this thread,
    # which must end before the rest of the suite's asyncio tests run.
    require_tools()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser profile (no cookies) per test; its last state is saved as a screenshot."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        if not tab.is_closed():
            tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
