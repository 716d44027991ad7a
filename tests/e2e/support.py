"""Browser-test helpers: Debian's Chromium under Playwright, static sites on other origins, signing in."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.support.servers import ROOT, free_port
from tests.support.stack import Stack

E2E_DIR = Path(__file__).resolve().parent
JS_DIR = E2E_DIR / "js"
PAGES_DIR = E2E_DIR / "pages"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
# Headless, no sandbox (containers), and nothing that phones home or updates itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The app role the test stack requires (RELAY_REQUIRED_ROLES), as the deployed default does.
REQUIRED_ROLE = "Relay.User"
# The daily token budget of each user on the controls stack (RELAY_BUDGET_USER_TOKENS_PER_DAY).
DAY_LIMIT = 100_000


@dataclass(frozen=True)
class ControlsStack:
    """A local host with the block list and token budgets on; its Azurite keeps its data in ``azurite_dir``."""

    stack: Stack
    azurite_dir: Path


@dataclass(frozen=True)
class Person:
    name: str
    oid: str
    tid: str
    roles: str = REQUIRED_ROLE


ADA = Person("Ada Lovelace", "1b2c3d4e-0000-4000-8000-0000000000ad", "72f988bf-0000-4000-8000-00000000a7e1")
GRACE = Person("Grace Hopper", "6a7b8c9d-0000-4000-8000-00000000c0b0", "72f988bf-0000-4000-8000-00000000a7e1")
# On the controls stack, each in a test of their own.
LIN = Person("Lin Budget", "1a1a1a1a-0000-4000-8000-00000000b0d1", "72f988bf-0000-4000-8000-00000000a7e1")
SPENDER = Person("Sam Spender", "2b2b2b2b-0000-4000-8000-00000000b0d2", "72f988bf-0000-4000-8000-00000000a7e1")
MALLORY = Person("Mallory Blocked", "3c3c3c3c-0000-4000-8000-00000000b0d3", "72f988bf-0000-4000-8000-00000000a7e1")
NO_ROLE = Person("Eve Outsider", "0e0e0e0e-0000-4000-8000-0000000000e5", "72f988bf-0000-4000-8000-00000000a7e1", roles="")


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serves tests/e2e/pages, plus the openai npm package's ES modules under /vendor/openai/."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(PAGES_DIR), **kwargs)

    def translate_path(self, path: str) -> str:
        prefix = "/vendor/openai/"
        if path.startswith(prefix):
            relative = path[len(prefix) :].split("?", 1)[0].split("#", 1)[0]
            package = (JS_DIR / "node_modules" / "openai").resolve()  # node_modules may be a symlink to a shared install
            target = (package / relative).resolve()
            if target.is_relative_to(package):
                return str(target)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Site:
    origin: str


@contextlib.contextmanager
def static_site() -> Iterator[Site]:
    """A static web server on its own loopback port: a different origin from the relay."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _SiteHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="e2e-static-site", daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def require_tools() -> None:
    missing = [str(CHROMIUM)] if not CHROMIUM.exists() else []
    packages = json.loads((JS_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
    missing += [str(JS_DIR / "node_modules" / name) for name in packages if not (JS_DIR / "node_modules" / name).is_dir()]
    if shutil.which("node") is None:
        missing.append("node")
    if missing:
        raise RuntimeError(f"browser/Node test prerequisites missing: {', '.join(missing)}; run scripts/ensure-e2e.sh (make test does)")


def sign_in(page: Page, stack: Stack, person: Person) -> None:
    """Through the SPA's Sign in link and the dev sign-in page, as a person would."""
    page.goto(f"{stack.base_url}/")
    page.get_by_role("link", name="Sign in").first.click()
    submit_dev_sign_in(page, person)
    page.wait_for_url(f"{stack.base_url}/")
    expect(page.locator("#account")).to_contain_text(f"Signed in as {person.name}")


def open_dev_sign_in(page: Page, stack: Stack, person: Person) -> None:
    """Straight to the dev sign-in page and back to the SPA, whatever the relay then says of the person."""
    page.goto(f"{stack.base_url}/.auth/login/aad?post_login_redirect_uri=/")
    submit_dev_sign_in(page, person)


def submit_dev_sign_in(page: Page, person: Person) -> None:
    expect(page.get_by_role("heading", name="Dev sign-in")).to_be_visible()
    page.get_by_label("Display name").fill(person.name)
    page.get_by_label("Object ID (oid)").fill(person.oid)
    page.get_by_label("Tenant ID (tid)").fill(person.tid)
    page.get_by_label("App roles (comma-separated)").fill(person.roles)
    page.get_by_role("button", name="Sign in").click()


def send(page: Page, prompt: str) -> None:
    page.get_by_label("Message").fill(prompt)
    page.get_by_role("button", name="Send").click()


def last_answer(page: Page) -> Any:
    return page.locator(".message-assistant .message-text").last


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def record_for(stack: Stack, marker: str) -> dict[str, Any] | None:
    """The emulator's record of the chat request whose last message contains ``marker``."""
    for record in reversed(stack.requests()):
        messages = (record.get("body") or {}).get("messages") or []
        if messages and marker in str(messages[-1].get("content", "")):
            return record
    return None
