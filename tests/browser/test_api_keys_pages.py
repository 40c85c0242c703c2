"""The API Keys pages in a real browser: what an admin does with a key from creation to deletion, and who may."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Locator, Page, expect

from app.domain.api_keys import rules
from tests.browser.conftest import ACTION_TIMEOUT_MS, ADMIN_EMAIL, STAFF_EMAIL, LiveApp, NewContext, sign_in

ALLOWED = "https://shop.example"


def origin_error(text: str) -> str:
    """The form's message for a bad origin, as the rules word it."""
    with pytest.raises(rules.InvalidOrigin) as refused:
        rules.normalize_origin(text)
    return str(refused.value)


def reload_until(page: Page, locator: Locator, text: str) -> None:
    """The worker folds usage in the background: reload until the page shows it (or give up)."""
    deadline = time.monotonic() + ACTION_TIMEOUT_MS / 1000
    while locator.inner_text() != text:
        assert time.monotonic() < deadline, f"still {locator.inner_text()!r}, not {text!r}"
        time.sleep(0.25)
        page.reload()


def bar_total(chart: Locator, outcome: str) -> int:
    """Requests of one outcome over the chart's bars, read from their accessible names ("..., Success: 3")."""
    labels = [slot.get_attribute("aria-label") or "" for slot in chart.locator("g.slot").all()]
    return sum(
        int(found.group(1).replace(",", ""))
        for label in labels
        if (found := re.search(rf"{outcome}: ([\d,]+)", label))
    )


def test_an_admin_creates_copies_uses_revokes_and_deletes_a_key(
    new_context: NewContext, live_app: LiveApp
) -> None:
    context = new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_app.url)
    page = sign_in(context, ADMIN_EMAIL)
    page.goto("/settings/api-keys")

    page.get_by_role("link", name="Create API Key").first.click()
    dialog = page.get_by_role("dialog", name="Create API Key")
    dialog.get_by_label("Name", exact=True).fill("Shop widget")
    dialog.get_by_label("Write").check()
    dialog.get_by_label("Allowed Origins").fill("shop.example")
    dialog.get_by_role("button", name="Create Key").click()
    expect(dialog.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(dialog.get_by_label("Allowed Origins")).to_have_accessible_description(
        origin_error("shop.example")
    )
    expect(dialog.get_by_label("Name", exact=True)).to_have_value("Shop widget")  # the form kept its input

    dialog.get_by_label("Allowed Origins").fill(ALLOWED)
    dialog.get_by_role("button", name="Create Key").click()
    created = page.get_by_role("dialog", name="API key created")
    secret_field = created.get_by_label("Shop widget")
    expect(secret_field).to_have_value(re.compile(r"^qv_pk_"))
    key = secret_field.input_value()
    assert rules.is_well_formed(key)

    created.get_by_role("button", name="Copy", exact=True).click()
    expect(created.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == key

    created.get_by_role("link", name="Done").click()
    expect(created).to_be_hidden()
    expect(page.locator("#create-key-body form")).to_be_attached()  # the blank form came back
    row = page.locator("tr", has=page.get_by_role("link", name="Shop widget"))
    expect(row).to_contain_text(rules.display_prefix(key))
    # Shown once: nowhere in the markup, the text, any field's value or the address any more.
    assert key not in page.content()
    assert key not in page.locator("body").inner_text()
    assert key not in page.evaluate(
        "() => [...document.querySelectorAll('input, textarea')].map(f => f.value)"
    )
    assert key not in page.url

    with live_app.api() as api:
        for _ in range(3):
            assert api.get(
                "/api/v1/services", headers={"Authorization": f"Bearer {key}", "Origin": ALLOWED}
            ).is_success
        refused = api.get(
            "/api/v1/services", headers={"Authorization": f"Bearer {key}", "Origin": "https://else.example"}
        )
        assert refused.json()["code"] == "origin_not_allowed"

    row.get_by_role("link", name="Shop widget").click()
    expect(page.get_by_role("heading", name="Shop widget")).to_be_visible()
    reload_until(page, page.locator("#total-requests"), "4")
    chart = page.get_by_role("group", name=re.compile(r"^Requests per day, last 30 days: 4 in all"))
    expect(chart).to_be_visible()
    assert bar_total(chart, "Success") == 3
    assert bar_total(chart, "Client error") == 1
    expect(page.get_by_role("cell", name="GET /api/v1/services")).to_be_visible()

    page.get_by_role("link", name="← API Keys").click()
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog", name="Revoke “Shop widget”?").get_by_role("button", name="Revoke key").click()
    expect(row.locator(".badge")).to_have_text("Revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    with live_app.api() as api:
        answer = api.get("/api/v1/services", headers={"Authorization": f"Bearer {key}", "Origin": ALLOWED})
        assert answer.json()["code"] == "key_revoked"
    # The refused call is still counted against the key, as an outcome of its own (the four served, plus it).
    reload_until(page, row.locator("td.requests"), "5")

    row.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete “Shop widget”?")
    confirm.get_by_label("Type Shop widget to confirm").fill("Shop")
    confirm.get_by_role("button", name="Delete key").click()
    expect(confirm.get_by_role("alert")).to_have_text("Type the key's name, Shop widget, to delete it.")
    expect(row).to_have_count(1)
    confirm.get_by_label("Type Shop widget to confirm").fill("Shop widget")
    confirm.get_by_role("button", name="Delete key").click()
    expect(row).to_have_count(0)
    page.reload()
    expect(page.get_by_role("link", name="Shop widget")).to_have_count(0)


def test_a_staff_member_cannot_reach_the_api_keys_page(new_context: NewContext) -> None:
    page = sign_in(new_context(), STAFF_EMAIL)
    response = page.goto("/settings/api-keys")
    assert response is not None and response.status == 403
    expect(page.get_by_text("Only admins can manage API keys.")).to_be_visible()
    expect(page.get_by_role("link", name="Create API Key")).to_have_count(0)
    expect(page.get_by_role("cell")).to_have_count(0)  # no key listed, not even by prefix
