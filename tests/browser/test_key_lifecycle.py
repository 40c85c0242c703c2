"""A key's page in a real browser: edit in place, roll with a grace period, the table's filters in the URL
(Back and Forward), and the same without JavaScript."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

from playwright.sync_api import Page, expect

from app.domain.api_keys import rules
from tests.browser.conftest import ADMIN_EMAIL, LiveApp, NewContext, go_back, go_forward, sign_in


def open_key_page(page: Page, name: str) -> None:
    page.goto("/settings/api-keys")
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()


def test_an_admin_edits_a_key_in_place_and_the_next_request_sees_it(
    new_context: NewContext, live_app: LiveApp
) -> None:
    key = live_app.issue_key("Editable widget", rate_limit=50)
    page = sign_in(new_context(), ADMIN_EMAIL)
    open_key_page(page, "Editable widget")
    expect(page.locator("#fact-rate")).to_have_text("50 requests per minute")
    expect(page.locator("#fact-expires")).to_contain_text("Never")
    expect(page.locator("#key-usage-view")).to_be_attached()  # the usage view, loaded into the page

    page.get_by_role("link", name="Edit", exact=True).click()
    dialog = page.get_by_role("dialog", name="Edit “Editable widget”")
    dialog.get_by_label("Allowed Origins").fill("shop.example")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(dialog.get_by_label("Allowed Origins")).to_have_accessible_description(re.compile("has no scheme"))
    dialog.get_by_label("Allowed Origins").fill("https://shop.example")
    dialog.get_by_label(re.compile(r"^Rate Limit")).fill("7")
    dialog.get_by_label("Expiration").select_option("30")
    dialog.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("dialog", name="Edit “Editable widget”")).to_be_hidden()
    expect(page.locator("#fact-rate")).to_have_text("7 requests per minute")
    expect(page.locator("#fact-origins")).to_have_text("https://shop.example")
    expect(page.locator("#fact-expires")).to_contain_text("in 29 days")
    # The exact time shows on keyboard focus too, not only on hover (in the studio's zone, Europe/London).
    expiry = page.locator("#fact-expires time")
    expiry.focus()
    shown = expiry.evaluate("el => getComputedStyle(el, '::after').content")
    assert re.search(r"\d{4}, \d\d:\d\d (GMT|BST)", shown), shown
    expect(page.locator("#key-audit")).to_contain_text("Edited API key")
    expect(page.locator("#key-audit")).to_contain_text("rate_limit_per_minute: 50 → 7")

    with live_app.api() as api:
        refused = api.get("/api/v1/services", headers={"Authorization": f"Bearer {key}"})
        assert refused.json()["code"] == "origin_not_allowed"
        served = api.get(
            "/api/v1/key", headers={"Authorization": f"Bearer {key}", "Origin": "https://shop.example"}
        )
        assert served.status_code == 200 and served.headers["x-ratelimit-limit"] == "7"
        assert served.json()["allowed_origins"] == ["https://shop.example"]
        assert served.json()["expires_at"] is not None


def test_an_admin_rolls_a_key_with_a_grace_period(new_context: NewContext, live_app: LiveApp) -> None:
    old = live_app.issue_key("Rolling widget")
    page = sign_in(new_context(), ADMIN_EMAIL)
    open_key_page(page, "Rolling widget")
    page.get_by_role("link", name="Roll key").click()
    dialog = page.get_by_role("dialog", name="Roll “Rolling widget”")
    expect(dialog.locator("#roll-ends-previous")).to_have_count(0)
    dialog.get_by_label("1 hour").check()
    dialog.get_by_role("button", name="Roll key").click()

    shown = page.get_by_role("dialog", name="New secret for “Rolling widget”")
    secret_field = shown.get_by_label("Rolling widget")
    expect(secret_field).to_have_value(re.compile(r"^qv_pk_"))
    new = secret_field.input_value()
    assert rules.is_well_formed(new) and new != old
    expect(shown).to_contain_text(f"The previous secret {rules.display_prefix(old)}... works until")
    # The page behind it already shows the new prefix and the previous secret's end.
    expect(page.locator("#key-prefix")).to_have_text(f"{rules.display_prefix(new)}...")
    expect(page.locator("#key-previous")).to_contain_text(
        f"Previous secret {rules.display_prefix(old)}... works until"
    )

    shown.get_by_role("link", name="Done").click()  # not copied: a warning first, as for a created key
    expect(shown.get_by_role("alert")).to_contain_text("You have not copied the key")
    shown.get_by_role("link", name="Done").click()
    expect(shown).to_be_hidden()
    # The dialog's close event, a task after it is hidden, empties it.
    expect(shown.locator("#new-key-value")).to_have_count(0)
    assert new not in page.content()
    assert new not in page.evaluate("() => [...document.querySelectorAll('input')].map(f => f.value)")
    assert page.url.endswith("/settings/api-keys/" + page.url.rsplit("/", 1)[-1])

    with live_app.api() as api:
        with_old = api.get("/api/v1/key", headers={"Authorization": f"Bearer {old}"})
        with_new = api.get("/api/v1/key", headers={"Authorization": f"Bearer {new}"})
    assert with_old.status_code == 200 and with_new.status_code == 200
    assert "sunset" not in with_new.headers
    assert parsedate_to_datetime(with_old.headers["sunset"]).isoformat(timespec="seconds").replace(
        "+00:00", ""
    ) == with_old.json()["secret_expires_at"].replace("+00:00", "")

    # Rolling again: the dialog says the previous secret ends at once, and it does.
    page.get_by_role("link", name="Roll key").click()
    again = page.get_by_role("dialog", name="Roll “Rolling widget”")
    expect(again.locator("#roll-ends-previous")).to_contain_text("Rolling again ends it at once")
    again.get_by_label("Now").check()
    again.get_by_role("button", name="Roll key").click()
    expect(page.get_by_role("dialog", name="New secret for “Rolling widget”")).to_contain_text(
        f"The older previous secret {rules.display_prefix(old)}... stopped working now"
    )
    with live_app.api() as api:
        assert api.get("/api/v1/key", headers={"Authorization": f"Bearer {old}"}).status_code == 401


def test_the_table_filters_live_in_the_url(new_context: NewContext, live_app: LiveApp) -> None:
    live_app.issue_key("Filter alpha")
    live_app.issue_key("Filter beta")
    page = sign_in(new_context(), ADMIN_EMAIL)
    page.goto("/settings/api-keys")
    rows = page.locator("#api-keys-body tr")
    expect(page.get_by_role("link", name="Filter beta")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Expires")).to_be_visible()

    page.get_by_role("searchbox", name="Search").fill("alpha")
    expect(page).to_have_url(re.compile(r"q=alpha"))
    expect(rows).to_have_count(1)
    expect(page.get_by_role("link", name="Filter alpha")).to_be_visible()

    page.get_by_label("Sort by").select_option("name")
    expect(page).to_have_url(re.compile(r"sort=name"))
    page.get_by_label("Status").select_option("revoked")
    expect(page).to_have_url(re.compile(r"status=revoked"))
    expect(page.get_by_text("No keys match.")).to_be_visible()

    go_back(page)
    expect(page).to_have_url(re.compile(r"status=all"))
    expect(page.get_by_role("link", name="Filter alpha")).to_be_visible()
    expect(page.get_by_label("Status")).to_have_value("all")
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("alpha")
    go_forward(page)
    expect(page.get_by_text("No keys match.")).to_be_visible()
    expect(page.get_by_label("Status")).to_have_value("revoked")

    page.get_by_role("link", name="Help: API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Roll a key (new secret, no downtime)")).to_be_visible()


def test_edit_roll_and_delete_work_without_javascript(new_context: NewContext, live_app: LiveApp) -> None:
    live_app.issue_key("Plain widget")
    page = sign_in(new_context(java_script_enabled=False), ADMIN_EMAIL)
    page.goto("/settings/api-keys?q=Plain")
    page.get_by_role("link", name="Plain widget").click()
    key_url = page.url

    page.get_by_role("link", name="Edit", exact=True).click()
    dialog = page.get_by_role("dialog", name="Edit “Plain widget”")
    dialog.get_by_label("Name", exact=True).fill("Plain widget 2")
    dialog.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name="Plain widget 2", exact=True)).to_be_visible()
    assert page.url == key_url

    page.get_by_role("link", name="Roll key").click()
    roll = page.get_by_role("dialog", name="Roll “Plain widget 2”")
    roll.get_by_label("24 hours").check()
    roll.get_by_role("button", name="Roll key").click()
    expect(
        page.get_by_role("dialog", name="New secret for “Plain widget 2”").get_by_label("Plain widget 2")
    ).to_have_value(re.compile(r"^qv_pk_"))

    page.goto(key_url)
    page.get_by_role("button", name="Delete", exact=True).click()  # the confirmation page
    confirm = page.get_by_role("region", name="Delete “Plain widget 2”?")
    confirm.get_by_label("Type Plain widget 2 to confirm").fill("Plain widget 2")
    confirm.get_by_role("button", name="Delete key").click()
    expect(page.get_by_role("heading", name="API Keys")).to_be_visible()
    expect(page.get_by_role("link", name="Plain widget 2")).to_have_count(0)
