"""The booking widget in a real browser, embedded in the demo website served on origins of its own."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, Request, expect

from app.devsite import DemoSiteServer
from tests.browser.conftest import ADMIN_EMAIL, VISITOR_TIME_ZONE, LiveApp, NewContext, sign_in

KEY_NAME = "Website widget"
SERVICE = "Deep Tissue Massage"
StartSite = Callable[[str, str], DemoSiteServer]


@dataclass
class Site:
    url: str
    key: str


def site_with_a_key(live_app: LiveApp, demo_site: StartSite, *, rate_limit: int = 1000) -> Site:
    """The demo website on a free port, embedding a new widget key that only its origin may use."""
    server = demo_site(live_app.url, "")
    key = live_app.issue_key(KEY_NAME, origins=server.url, rate_limit=rate_limit)
    server.embed(live_app.url, key)
    return Site(url=server.url, key=key)


@pytest.fixture
def site(live_app: LiveApp, demo_site: StartSite) -> Site:
    return site_with_a_key(live_app, demo_site)


@dataclass
class Widget:
    page: Page
    root: Locator
    console_errors: list[str]

    @property
    def status(self) -> Locator:
        return self.root.get_by_role("status")

    @property
    def times(self) -> Locator:
        return self.root.get_by_role("group", name="Free times").get_by_role("radio")

    def choose_service(self, name: str = SERVICE) -> None:
        self.root.get_by_label("Service").select_option(label=name)
        expect(self.times.first).to_be_visible()

    def choose_day(self, day: date) -> None:
        self.root.get_by_label("Day").fill(day.isoformat())
        expect(self.times.first).to_have_attribute("value", re.compile(f"^{day.isoformat()}T"))

    def fill_customer(self, name: str) -> None:
        self.root.get_by_label("Your name").fill(name)
        self.root.get_by_label("Email").fill("visitor@example.com")

    def book_button(self) -> Locator:
        return self.root.get_by_role("button", name=re.compile(r"^Book"))


def weekday_ahead(weekday: int, at_least_days: int) -> date:
    """A day of the week (0 = Monday) well ahead on the visitor's calendar. Tests that need several free times
    pick days of their own: they share one database, and the first free day may have a single time left."""
    day = datetime.now(ZoneInfo(VISITOR_TIME_ZONE)).date() + timedelta(days=at_least_days)
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def open_widget(context: BrowserContext, url: str) -> Widget:
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    root = page.get_by_role("region", name="Book online")
    expect(root).to_be_visible()
    return Widget(page=page, root=root, console_errors=errors)


def book_through_the_api(live_app: LiveApp, site: Site, service_id: str, start: str) -> None:
    with live_app.api() as api:
        booked = api.post(
            "/api/v1/reservations",
            json={
                "service_id": service_id,
                "start": start,
                "customer": {"name": "Quick", "email": "q@example.com"},
            },
            headers={
                "Authorization": f"Bearer {site.key}",
                "Origin": site.url,
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
    assert booked.status_code == 201, booked.text


def test_a_visitor_books_by_keyboard_and_the_staff_see_the_reservation(
    new_context: NewContext, live_app: LiveApp, site: Site
) -> None:
    widget = open_widget(new_context(), site.url)
    widget.choose_service()
    expect(
        widget.root.get_by_text(f"Times are shown in your time zone, {VISITOR_TIME_ZONE}.")
    ).to_be_visible()
    widget.choose_day(weekday_ahead(1, 15))  # a Tuesday: the studio's full day, 14 times

    # Times in the visitor's zone: New York offsets, and the labels are those wall-clock times.
    widget.times.first.focus()
    widget.page.keyboard.press("ArrowRight")  # a radio group: arrows move and choose
    chosen = widget.times.nth(1)
    expect(chosen).to_be_checked()
    expect(chosen).to_be_focused()
    start = chosen.get_attribute("value") or ""
    assert start[-6:] in ("-05:00", "-04:00"), start
    expect(chosen).to_have_accessible_name(start[11:16])
    expect(widget.book_button()).to_have_text(f"Book {start[11:16]}")

    customer = f"Keyboard Visitor {uuid.uuid4().hex[:6]}"
    widget.root.get_by_label("Your name").press_sequentially(customer)
    widget.root.get_by_label("Your name").press("Tab")
    widget.page.keyboard.type("visitor@example.com")
    widget.page.keyboard.press("Enter")

    done = widget.root.get_by_role("heading", name="You're booked")
    expect(done).to_be_focused()
    expect(widget.root).to_contain_text(f"{SERVICE}, ")
    expect(widget.root).to_contain_text(f"{start[11:16]} ({VISITOR_TIME_ZONE})")
    reference = widget.root.get_by_text(re.compile(r"^Reference: res_\w+$"))
    reservation_id = reference.inner_text().removeprefix("Reference: ")
    # The host page's strict CSP held (no inline style or script) and nothing failed to load.
    assert widget.console_errors == []

    staff = sign_in(new_context(), ADMIN_EMAIL)
    staff.goto("/bookings/reservations")
    row = staff.locator(f"#reservation-{reservation_id}")
    expect(row).to_contain_text(customer)
    expect(row).to_contain_text(SERVICE)
    expect(row).to_contain_text(KEY_NAME)
    booked_at = row.locator("time").get_attribute("datetime") or ""
    assert datetime.fromisoformat(booked_at) == datetime.fromisoformat(start)


def test_on_an_origin_the_key_does_not_allow_the_widget_says_so(
    new_context: NewContext, live_app: LiveApp, site: Site, demo_site: StartSite
) -> None:
    elsewhere = demo_site(live_app.url, site.key)  # the same page and key, on another port
    widget = open_widget(new_context(), elsewhere.url)
    expect(widget.status).to_contain_text("Origin not allowed")
    expect(widget.root.get_by_label("Service")).to_be_hidden()
    expect(widget.root.get_by_role("button", name="Try again")).to_be_hidden()  # retrying cannot help


def test_a_time_taken_meanwhile_is_refused_readably_and_another_can_be_booked(
    new_context: NewContext, live_app: LiveApp, site: Site
) -> None:
    widget = open_widget(new_context(), site.url)
    widget.choose_service()
    widget.choose_day(weekday_ahead(2, 8))  # a Wednesday
    first = widget.times.first
    start = first.get_attribute("value") or ""
    first.check()
    widget.fill_customer("Second Visitor")
    book_through_the_api(live_app, site, widget.root.get_by_label("Service").input_value(), start)

    widget.book_button().click()
    expect(widget.status).to_have_text("That time was just taken — pick another.")
    expect(widget.root.locator(f"input[value='{start}']")).to_have_count(0)  # the times were fetched again
    expect(widget.times.first).to_be_focused()

    widget.times.first.check()
    widget.book_button().click()
    expect(widget.root.get_by_role("heading", name="You're booked")).to_be_visible()


def is_booking(request: Request) -> bool:
    return request.method == "POST" and request.url.endswith("/api/v1/reservations")


def test_a_rate_limited_booking_says_how_long_to_wait_and_retries_with_the_same_idempotency_key(
    new_context: NewContext, live_app: LiveApp, demo_site: StartSite
) -> None:
    limit = 5
    limited = site_with_a_key(live_app, demo_site, rate_limit=limit)
    widget = open_widget(new_context(), limited.url)
    expect(widget.times.first).to_be_visible()
    widget.times.first.check()
    widget.fill_customer("Patient Visitor")

    # Use up the rest of the key's limit, so the booking is the request over it.
    with live_app.api() as api:
        headers = {"Authorization": f"Bearer {limited.key}", "Origin": limited.url}
        for _ in range(limit + 1):  # the widget's own requests so far count too
            if api.get("/api/v1/services", headers=headers).status_code == 429:
                break
        else:
            raise AssertionError("the key's limit was never reached")

    with widget.page.expect_request(is_booking) as first_attempt:
        widget.book_button().click()
    expect(widget.status).to_have_text(re.compile(r"^Too many requests — try again in \d+ s\.$"))
    wait = int(re.findall(r"\d+", widget.status.inner_text())[0])
    assert 1 <= wait <= 60

    with widget.page.expect_request(is_booking) as retry:
        widget.root.get_by_role("button", name="Try again").click()
    key = first_attempt.value.headers["idempotency-key"]
    assert uuid.UUID(key)
    assert retry.value.headers["idempotency-key"] == key


def test_without_javascript_the_widget_is_a_link(new_context: NewContext, site: Site) -> None:
    page = new_context(java_script_enabled=False).new_page()
    page.goto(site.url)
    expect(page.get_by_role("link", name="Email us to book")).to_be_visible()
    expect(page.get_by_role("region", name="Book online")).to_have_count(0)


def test_the_confirmation_links_to_a_page_where_the_customer_cancels(
    new_context: NewContext, live_app: LiveApp, site: Site
) -> None:
    widget = open_widget(new_context(), site.url)
    widget.choose_service()
    widget.choose_day(weekday_ahead(3, 22))  # a Thursday, weeks ahead: well before the cancellation notice
    first = widget.times.first
    start = first.get_attribute("value") or ""
    first.check()
    widget.fill_customer("Cancelling Visitor")
    widget.book_button().click()
    expect(widget.root.get_by_role("heading", name="You're booked")).to_be_visible()
    link = widget.root.get_by_role("link", name="See or cancel this booking")
    href = link.get_attribute("href") or ""
    assert href.startswith(f"{live_app.url}/manage?token=")
    assert widget.console_errors == []

    with widget.page.context.expect_page() as opened:
        link.click()
    page = opened.value
    expect(page.get_by_role("heading", name="Your booking")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Cancelling Visitor")
    page.get_by_role("button", name="Cancel my booking").click()
    expect(page.locator("main").get_by_role("status")).to_have_text("Your booking is cancelled.")
    expect(page.get_by_role("button", name="Cancel my booking")).to_have_count(0)

    # The time is free again at once: the widget offers it after a fresh look.
    again = open_widget(new_context(), site.url)
    again.choose_service()
    again.choose_day(weekday_ahead(3, 22))
    expect(again.root.locator(f"input[value='{start}']")).to_have_count(1)
