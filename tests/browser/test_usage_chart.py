"""A key's usage chart in a real browser, at 1280 and 390 px: readable, operable by pointer, keyboard and touch,
and clean in the axe-core scan of tests/browser/a11y.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.usage.jobs import fold_usage
from app.lib.db import create_alchemy_config, transaction
from app.workers import job_context
from tests.browser.a11y import SCREENS, assert_accessible
from tests.browser.conftest import ADMIN_EMAIL, LiveApp, NewContext, go_back, run_async, sign_in


def key_id(live_app: LiveApp, name: str) -> str:
    secret = live_app.issue_key(name)

    async def find() -> str:
        alchemy = create_alchemy_config(live_app.settings)
        try:
            async with transaction(alchemy) as session:
                found = await session.scalar(
                    select(ApiKey.id).where(ApiKey.key_hash == rules.hash_key(secret))
                )
                assert found is not None
                return str(found)
        finally:
            await alchemy.get_engine().dispose()

    return run_async(find)


def fold(live_app: LiveApp, batch_id: str, events: list[tuple[Any, ...]]) -> None:
    async def run() -> None:
        alchemy = create_alchemy_config(live_app.settings)
        try:
            await fold_usage(job_context(live_app.settings, alchemy), batch_id=batch_id, events=events)  # type: ignore[arg-type]
        finally:
            await alchemy.get_engine().dispose()

    run_async(run)


@pytest.fixture(scope="module")
def busy_key(live_app: LiveApp) -> str:
    """A key with a month of traffic: thousands of successes a day and a few server errors and refusals."""
    found = key_id(live_app, "Busy widget")
    now = datetime.now(UTC)
    events: list[tuple[Any, ...]] = []
    for days_ago in range(30):
        at = (now - timedelta(days=days_ago, minutes=5)).timestamp()
        events += [(found.replace("-", ""), at, "GET", "/api/v1/services", 200, 1500)] * (
            2000 + 37 * days_ago
        )
        events += [(found.replace("-", ""), at, "GET", "/api/v1/services", 500, 9000)] * (days_ago % 3)
        events += [(found.replace("-", ""), at, "POST", "/api/v1/reservations", 429, 100)] * 2
    fold(live_app, found, events)  # a batch id is at most 36 characters, as a UUID
    return found


def visible_chart(page: Page) -> Locator:
    return page.locator("svg.usage-chart:visible")


def assert_labels_apart(chart: Locator) -> None:
    boxes = [box for box in (text.bounding_box() for text in chart.locator("text.axis").all()) if box]
    assert len(boxes) >= 4
    for n, a in enumerate(boxes):
        for b in boxes[n + 1 :]:
            apart = (
                a["x"] + a["width"] <= b["x"] + 0.5
                or b["x"] + b["width"] <= a["x"] + 0.5
                or a["y"] + a["height"] <= b["y"] + 0.5
                or b["y"] + b["height"] <= a["y"] + 0.5
            )
            assert apart, f"axis labels overlap: {a} {b}"
        assert a["height"] >= 10, f"axis label {a['height']:.1f} px high: too small to read"


def test_the_chart_reads_and_works_by_pointer_and_keyboard_and_passes_axe(
    on_screen: NewContext, live_app: LiveApp, busy_key: str, screen: str
) -> None:
    page = sign_in(on_screen(), ADMIN_EMAIL)
    page.goto(f"/settings/api-keys/{busy_key}/usage")
    chart = visible_chart(page)
    expect(chart).to_have_count(1)
    assert chart.get_attribute("class") == f"usage-chart {'wide' if screen == 'desktop' else 'narrow'}"
    box = chart.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= SCREENS[screen]["width"]
    assert_labels_apart(chart)
    # Round ticks, and the server errors' share on its own axis.
    ticks = chart.locator('text.axis[text-anchor="end"]').all_text_contents()
    assert ticks[0] == "0" and all(re.fullmatch(r"\d+(\.5)?k?|0", tick) for tick in ticks), ticks
    assert chart.locator("path.error-rate").count() == 1
    assert chart.locator("rect.bar.server_error").count() == 20  # every day with a server error shows it

    tip = page.locator(".chart-tip")
    expect(tip).to_be_hidden()
    slots = chart.locator("g.slot")
    slots.nth(10).hover()
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("Success: ")
    expect(tip).to_contain_text("Rate-limited: 2")
    highlighted = slots.nth(10).locator("rect.hit")
    assert highlighted.evaluate("rect => getComputedStyle(rect).fill") != "rgba(0, 0, 0, 0)"

    # Keyboard: one tab stop on the newest day, arrows move along the days, each with its tooltip.
    page.mouse.move(0, 0)
    expect(tip).to_be_hidden()
    slots.last.focus()
    expect(tip).to_be_visible()
    newest = tip.inner_text()
    page.keyboard.press("ArrowLeft")
    expect(slots.nth(28)).to_be_focused()
    expect(tip).not_to_have_text(newest)
    assert slots.nth(28).get_attribute("tabindex") == "0" and slots.last.get_attribute("tabindex") == "-1"
    page.keyboard.press("Escape")
    expect(tip).to_be_hidden()

    page.locator("summary", has_text="The chart's numbers").click()
    table = page.get_by_role("table", name=re.compile("^Requests per day, last 30 days"))
    expect(table.locator("tbody tr")).to_have_count(30)
    assert_accessible(page, "#usage-view")


def test_a_tap_shows_a_bars_numbers(on_screen: NewContext, live_app: LiveApp, busy_key: str) -> None:
    page = sign_in(on_screen(has_touch=True), ADMIN_EMAIL)  # a touch screen at either width
    page.goto(f"/settings/api-keys/{busy_key}/usage")
    slot = visible_chart(page).locator("g.slot").nth(5)
    slot.tap()
    tip = page.locator(".chart-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("requests")
    label = slot.get_attribute("aria-label") or ""
    assert tip.inner_text().splitlines()[0] == label.split("; ")[0]  # the tapped day's own numbers


def test_ranges_are_links_kept_in_the_url_and_an_empty_range_says_so(
    on_screen: NewContext, live_app: LiveApp, busy_key: str, screen: str
) -> None:
    page = sign_in(on_screen(), ADMIN_EMAIL)
    page.goto(f"/settings/api-keys/{busy_key}/usage")
    page.get_by_role("navigation", name="Usage period").get_by_role("link", name="24 hours").click()
    expect(page).to_have_url(re.compile(r"/usage\?range=24h$"))
    expect(page.get_by_role("link", name="24 hours")).to_have_attribute("aria-current", "true")
    expect(visible_chart(page).locator("g.slot")).to_have_count(24)
    assert_labels_apart(visible_chart(page))
    page.reload()  # the range is in the address: a reload (or a shared link) shows the same
    expect(visible_chart(page).locator("g.slot")).to_have_count(24)
    page.get_by_role("link", name="90 days").click()
    expect(page).to_have_url(re.compile(r"/usage\?range=90d$"))
    expect(visible_chart(page).locator("g.slot")).to_have_count(90)
    assert_labels_apart(visible_chart(page))
    go_back(page)
    expect(page).to_have_url(re.compile(r"/usage\?range=24h$"))

    quiet = key_id(live_app, f"Quiet widget {screen}")
    page.goto(f"/settings/api-keys/{quiet}/usage?range=7d")
    chart = visible_chart(page)
    expect(chart.locator("text.empty")).to_have_text("No requests in the last 7 days")
    assert chart.locator('text.axis[text-anchor="end"]').all_text_contents() == ["0"]
    assert_accessible(page, "#usage-view")
