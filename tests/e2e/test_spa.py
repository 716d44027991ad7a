"""The sample SPA in Chromium against the local host: what a person sees and what Azure OpenAI receives."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.e2e.support import (
    ADA,
    ARTIFACTS,
    DAY_LIMIT,
    GRACE,
    LIN,
    MALLORY,
    NO_ROLE,
    SPENDER,
    ControlsStack,
    Person,
    last_answer,
    open_dev_sign_in,
    record_for,
    send,
    sign_in,
    wait_for,
)
from tests.support.azurite import admin
from tests.support.stack import APPLICATION_NAME, Stack

# Samples the answer's length on every animation frame until the answer is complete.
SAMPLE_FRAMES = """() => {
  window.__frames = [];
  const tick = () => {
    const answers = document.querySelectorAll('.message-assistant .message-text');
    const answer = answers[answers.length - 1];
    window.__frames.push(answer ? answer.textContent.length : -1);
    const done = answer && answer.closest('.message').getAttribute('aria-busy') === 'false';
    if (!done) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""


def marker() -> str:
    return f"m{uuid.uuid4().hex[:8]}"


def test_sign_in_shows_what_defender_receives(page: Page, e2e_stack: Stack) -> None:
    page.goto(f"{e2e_stack.base_url}/")
    expect(page.locator("#account")).to_contain_text("You are not signed in")
    expect(page.get_by_label("Message")).to_be_disabled()

    sign_in(page, e2e_stack, ADA)

    panel = page.get_by_role("complementary", name="What Defender for Cloud receives")
    expect(panel.locator("#usc-application_name")).to_have_text(APPLICATION_NAME)
    expect(panel.locator("#usc-end_user_id")).to_have_text(ADA.oid)
    expect(panel.locator("#usc-end_user_tenant_id")).to_have_text(ADA.tid)
    expect(panel.locator("#usc-source_ip")).to_have_text("127.0.0.1")
    page.screenshot(path=str(ARTIFACTS / "signed-in-defender-panel.png"), full_page=True)

    # The panel tells the truth: it is exactly what the relay then sends with a prompt.
    tag = marker()
    send(page, f"Who am I? {tag}")
    expect(page.locator("#status")).to_have_text("Answer complete.")
    record = record_for(e2e_stack, tag)
    assert record is not None
    assert record["user_security_context"] == {
        "application_name": APPLICATION_NAME,
        "end_user_id": ADA.oid,
        "end_user_tenant_id": ADA.tid,
        "source_ip": "127.0.0.1",
    }


def test_the_answer_streams_in_over_several_frames(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, GRACE)
    page.evaluate(SAMPLE_FRAMES)
    send(page, "Tell me about compilers [emulate:chunk_delay_ms=40] [emulate:words=30]")
    expect(page.locator("#status")).to_have_text("Answer complete.", timeout=15_000)

    answer = last_answer(page).inner_text()
    assert answer.startswith("Emulated gpt-4o-mini answer to: Tell me about compilers")
    assert len(answer.split()) == 30
    frames: list[int] = page.evaluate("window.__frames")
    growth = [n for n in frames if n > 0]
    assert growth == sorted(growth), "the answer only ever grows"
    steps = sorted(set(growth))
    assert len(steps) >= 3 and steps[0] < len(answer), f"rendered in {len(steps)} step(s), not streamed: {steps}"
    assert steps[-1] == len(answer)
    page.screenshot(path=str(ARTIFACTS / "streamed-answer.png"), full_page=True)


def test_stop_cancels_the_request_upstream(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, ADA)
    tag = marker()
    send(page, f"A long one {tag} [emulate:words=400] [emulate:chunk_delay_ms=50]")
    expect(last_answer(page)).to_contain_text(tag)
    expect(page.get_by_role("button", name="Send")).to_be_disabled()

    page.get_by_role("button", name="Stop").click()
    stopped_at = time.monotonic()
    # The stream would run another 20 s; the bound leaves a loaded machine time to notice.
    record = wait_for(lambda: (r := record_for(e2e_stack, tag)) and r["outcome"] == "cancelled" and r, timeout=5.0)
    assert time.monotonic() - stopped_at < 5.0
    assert record["stream"] is True

    expect(page.locator("#status")).to_contain_text("Stopped")
    expect(page.locator(".message-assistant").last).to_contain_text("Stopped.")
    partial = last_answer(page).inner_text()
    page.wait_for_timeout(300)
    assert last_answer(page).inner_text() == partial, "nothing arrives after Stop"
    assert len(partial.split()) < 400
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_escape_stops_an_answer_too(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, GRACE)
    tag = marker()
    send(page, f"Another long one {tag} [emulate:words=400] [emulate:chunk_delay_ms=50]")
    expect(last_answer(page)).to_contain_text(tag)
    page.keyboard.press("Escape")
    wait_for(lambda: (r := record_for(e2e_stack, tag)) and r["outcome"] == "cancelled", timeout=2.0)
    expect(page.locator("#status")).to_contain_text("Stopped")


def test_content_filter_blocks_are_explained(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, ADA)
    send(page, "Something hateful [emulate:content_filter]")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Blocked by the content filter")
    expect(alert).to_contain_text("hate (severity high)")
    expect(page.get_by_label("Message")).to_have_value("Something hateful [emulate:content_filter]")
    page.screenshot(path=str(ARTIFACTS / "content-filter.png"), full_page=True)

    send(page, "A prompt attack [emulate:jailbreak]")
    expect(alert).to_contain_text("a jailbreak attempt")

    # The filter can also cut an answer off while it streams.
    send(page, "Tell me a story [emulate:output_filter] [emulate:words=10]")
    expect(alert).to_contain_text("Answer stopped by the content filter")
    expect(alert).to_contain_text("violence (severity high)")
    expect(page.locator("#status")).to_have_text("Answer stopped by the content filter.")
    expect(last_answer(page)).to_contain_text("Emulated gpt-4o-mini answer")


def test_rate_limit_shows_when_to_retry(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, GRACE)
    send(page, "Hello [emulate:rate_limit=30]")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many requests")
    expect(alert).to_contain_text(re.compile(r"Try again in (29|30) seconds\."))
    page.screenshot(path=str(ARTIFACTS / "rate-limited.png"), full_page=True)


def test_a_stream_that_breaks_off_keeps_what_arrived(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, ADA)
    # chunk_delay_ms: the words reach the relay in reads of their own, before the connection breaks
    # (the httpx-based upstream once lost words that arrived in the same read as the break).
    send(page, "Hello there [emulate:midstream_fail] [emulate:chunk_delay_ms=30]")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The answer broke off")
    expect(alert).to_contain_text("The stream from Azure OpenAI broke off.")
    expect(last_answer(page)).to_have_text("Emulated gpt-4o-mini answer")


def test_upstream_failure_is_readable(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, ADA)
    send(page, "Hello [emulate:status=500]")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Azure OpenAI could not answer")
    expect(alert).to_contain_text(re.compile(r"Request ID: [0-9a-f]{32}"))
    expect(alert).not_to_contain_text("127.0.0.1")  # no upstream URL leaks


def test_a_user_without_the_app_role_is_told_so(page: Page, e2e_stack: Stack) -> None:
    open_dev_sign_in(page, e2e_stack, NO_ROLE)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("You don't have access")
    expect(alert).to_contain_text("Required app role missing.")
    expect(page.locator("#account")).to_contain_text("Signed in, without access")
    expect(page.get_by_role("link", name="Sign out")).to_be_visible()


def test_sign_out_then_the_relay_answers_401(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, ADA)
    page.get_by_role("link", name="Sign out").click()
    expect(page.locator("#account")).to_contain_text("You are not signed in")
    expect(page.locator("#defender-status")).to_have_text("Sign in to see it.")
    expect(page.locator("#usc")).to_be_hidden()
    status = page.evaluate(
        """async () => (await fetch('/api/v1/chat/completions', {method: 'POST', credentials: 'same-origin',
             headers: {'Content-Type': 'application/json'}, body: JSON.stringify({messages: [{role: 'user', content: 'hi'}]})})).status"""
    )
    assert status == 401
    assert page.evaluate("async () => (await fetch('/api/me')).status") == 401


def test_an_expired_session_offers_sign_in(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, GRACE)
    page.context.clear_cookies()  # the session cookie expires while the page stays open
    send(page, "Still there?")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("You are not signed in")
    link = alert.get_by_role("link", name="Sign in")
    expect(link).to_have_attribute("href", "/.auth/login/aad?post_login_redirect_uri=/")
    link.click()
    expect(page.get_by_role("heading", name="Dev sign-in")).to_be_visible()


def test_keyboard_only(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, ADA)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the message box")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Message")).to_be_focused()
    page.keyboard.type("Hello from the keyboard")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text("Answer complete.")
    expect(last_answer(page)).to_contain_text("Hello from the keyboard")
    expect(page.get_by_label("Message")).to_be_focused()
    # Every control is reachable and shows where focus is.
    reached: list[str] = []
    for _ in range(12):
        page.keyboard.press("Tab")
        info: dict[str, Any] = page.evaluate(
            "() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return {id: e === document.body ? null : e.id || e.textContent.trim(),"
            " outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2}; }"
        )
        if info["id"] is None:  # past the last control
            break
        reached.append(info["id"])
        assert info["outline"], f"no visible focus on {info['id']}"
    for control in ("model", "new-chat", "send", "refresh-me"):
        assert control in reached, f"{control} not reachable by Tab: {reached}"


# Text contrast of every visible text element, against the first opaque background behind it (WCAG 2 formula).
CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || c[3] === 1) return c.slice(0, 3); } return [255, 255, 255]; };
  const failures = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.checkVisibility() || el.closest('.visually-hidden')) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) failures.push(`${el.tagName}#${el.id}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return failures;
}"""


def test_text_contrast_meets_wcag_aa(page: Page, e2e_stack: Stack) -> None:
    page.goto(f"{e2e_stack.base_url}/")
    expect(page.locator("#account")).to_contain_text("You are not signed in")
    assert page.evaluate(CONTRAST) == []
    sign_in(page, e2e_stack, GRACE)
    send(page, "Contrast check [emulate:rate_limit=5]")
    expect(page.get_by_role("alert")).to_be_visible()
    send_disabled_state = page.evaluate(CONTRAST)
    assert send_disabled_state == []


def test_usable_at_phone_width(page: Page, e2e_stack: Stack) -> None:
    page.set_viewport_size({"width": 375, "height": 812})
    sign_in(page, e2e_stack, ADA)
    send(page, "Hello from a phone")
    expect(page.locator("#status")).to_have_text("Answer complete.")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling"
    for name in ("Send", "Stop", "New chat"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        assert box["height"] >= 44, f"{name} is a comfortable touch target"
    expect(page.get_by_role("complementary", name="What Defender for Cloud receives").locator("#usc-end_user_id")).to_have_text(ADA.oid)
    page.screenshot(path=str(ARTIFACTS / "phone-375.png"), full_page=True)


# --- the budget, the access controls and the emulator's examples -----------------------------------


def tokyo_page(browser: Browser) -> Page:
    """A page in Tokyo (UTC+9, no daylight saving), so a reset at midnight UTC reads 09:00 local time."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="Asia/Tokyo")
    context.set_default_timeout(10_000)
    return context.new_page()


def budget_line(page: Page, window: str) -> Any:
    return page.locator(f"#budget-windows [data-window={window}] dd")


def test_the_budget_shows_what_is_left_and_when_it_resets_in_local_time(browser: Browser, controls_stack: ControlsStack) -> None:
    page = tokyo_page(browser)
    try:
        sign_in(page, controls_stack.stack, LIN)
        budget = page.get_by_role("region", name="Your token budget")
        expect(budget).to_contain_text("You, today")
        expect(budget_line(page, "user_tokens_per_day")).to_have_text(re.compile(rf"^{DAY_LIMIT:,} of {DAY_LIMIT:,} tokens left · resets at (\w{{3}} )?09:00$"))
        expect(budget_line(page, "user_tokens_per_minute")).to_contain_text("100,000 of 100,000 tokens left · resets at")

        send(page, "Hello budget")
        expect(page.locator("#status")).to_have_text("Answer complete.")
        remaining = wait_for(lambda: (me := page.evaluate("async () => (await fetch('/api/me')).json()"))["budget"]["user_tokens_per_day"]["remaining"] < DAY_LIMIT and me, timeout=5)
        left = remaining["budget"]["user_tokens_per_day"]["remaining"]
        expect(budget_line(page, "user_tokens_per_day")).to_contain_text(f"{left:,} of {DAY_LIMIT:,} tokens left")
        page.screenshot(path=str(ARTIFACTS / "budget.png"), full_page=True)
    finally:
        page.context.close()


def test_a_used_up_budget_says_which_budget_and_when_it_resets(browser: Browser, controls_stack: ControlsStack) -> None:
    page = tokyo_page(browser)
    try:
        sign_in(page, controls_stack.stack, SPENDER)
        # A prompt Azure bills above the relay's estimate of it: admitted, then charged what it cost.
        send(page, f"Spend it all [emulate:prompt_tokens={DAY_LIMIT + 200}]")
        expect(page.locator("#status")).to_have_text("Answer complete.", timeout=20_000)
        expect(budget_line(page, "user_tokens_per_day")).to_have_text(re.compile(rf"^Used up \({DAY_LIMIT:,} tokens\) · resets at (\w{{3}} )?09:00$"))

        send(page, "One more")
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Token budget used up")
        expect(alert).to_contain_text(re.compile(r"You have used your daily token budget\. It resets at (\w{3} )?09:00 \(your time\)\."))
        expect(alert).not_to_contain_text("seconds")
        expect(alert).not_to_contain_text("rate limiting")
        page.screenshot(path=str(ARTIFACTS / "budget-used-up.png"), full_page=True)
    finally:
        page.context.close()


def test_a_blocked_user_gets_one_instruction_and_refresh_leaves_no_stale_values(page: Page, controls_stack: ControlsStack) -> None:
    stack = controls_stack.stack
    sign_in(page, stack, MALLORY)
    expect(page.locator("#usc-end_user_id")).to_have_text(MALLORY.oid)
    blocked = admin(controls_stack.azurite_dir, "block", "--oid", MALLORY.oid, "--reason", "e2e", "--ttl", "1h")
    assert blocked.returncode == 0, blocked.stderr
    wait_for(lambda: page.evaluate("async () => (await fetch('/api/me')).status") == 403, timeout=10)

    send(page, "Am I still allowed?")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Your access is blocked")
    expect(alert).to_contain_text("This app has blocked your account or network. Contact your administrator to have it reviewed.")
    expect(alert).not_to_contain_text("owner")

    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#defender-status")).to_have_text("Not available: the relay refused the request.")
    expect(page.locator("#usc")).to_be_hidden()
    expect(page.locator("#budget")).to_be_hidden()
    assert page.locator("#usc-end_user_id").text_content() == ""
    assert MALLORY.oid not in page.locator("#defender").inner_text()
    expect(alert).to_contain_text("Your access is blocked")


def test_an_unreachable_block_list_is_explained(page: Page, unreachable_tables_stack: Stack) -> None:
    open_dev_sign_in(page, unreachable_tables_stack, Person("Tia Tables", "4d4d4d4d-0000-4000-8000-00000000b0d4", ADA.tid))
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Access checks are unavailable")
    expect(alert).to_contain_text("The relay cannot check its block list right now")
    expect(page.locator("#defender-status")).to_have_text("Not available: the relay refused the request.")


def test_a_busy_relay_says_so(page: Page, controls_stack: ControlsStack) -> None:
    stack = controls_stack.stack
    sign_in(page, stack, ADA)
    other = page.context.new_page()  # the same person in a second tab holds the instance's one upstream connection
    other.goto(f"{stack.base_url}/")
    tag = marker()
    send(other, f"Hold the line {tag} [emulate:words=400] [emulate:chunk_delay_ms=50]")
    expect(last_answer(other)).to_contain_text(tag)

    send(page, "Me too")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The relay is busy")
    expect(alert).to_contain_text("Try again in a few seconds.")
    other.get_by_role("button", name="Stop").click()
    expect(other.locator("#status")).to_contain_text("Stopped")


def test_the_emulator_examples_fill_the_message_box_and_a_tool_call_is_shown(page: Page, e2e_stack: Stack) -> None:
    sign_in(page, e2e_stack, GRACE)
    examples = page.get_by_role("region", name="Try the emulator")
    for name in ("Prompt blocked by the content filter", "A long answer (300 words)", "A slow answer (10 seconds)", "A tool call (get_weather)"):
        expect(examples.get_by_role("button", name=name)).to_be_visible()
    examples.get_by_role("button", name="A tool call (get_weather)").click()
    expect(page.get_by_label("Message")).to_have_value("What is the weather in Oslo? [emulate:tool_call=get_weather]")
    expect(page.get_by_label("Message")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text("Answer complete.")
    expect(last_answer(page)).to_have_text('Asked to call get_weather({"city":"city"})')
    expect(page.locator(".message-assistant").last).to_contain_text("this sample page does not run tools")
