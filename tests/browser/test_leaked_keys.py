"""A key GitHub finds in public: revoked at once, and a banner for the admins until one dismisses it."""

from __future__ import annotations

import uuid

from playwright.sync_api import Locator, Page, expect

from app.domain.api_keys import rules
from tests.browser.a11y import check_page
from tests.browser.conftest import ADMIN_EMAIL, LiveApp, NewContext, sign_in
from tests.secret_scanning_helpers import LEAK_URL, REPORT_PATH, report_body


def report_leak(live_app: LiveApp, key: str) -> None:
    """GitHub's signed report of `key`, then the proof that the key no longer works."""
    body = report_body(key)
    with live_app.api() as api:
        answer = api.post(REPORT_PATH, content=body, headers=live_app.github.headers(body))
        assert answer.json() == [
            {"token_hash": rules.hash_key(key), "token_type": "quickvisit_api_key", "label": "true_positive"}
        ]
        refused = api.get("/api/v1/services", headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 401 and refused.json()["code"] == "key_revoked"


def banner(page: Page, name: str, key: str) -> Locator:
    title = f"API key {name} ({rules.display_prefix(key)}...) was found in public and has been revoked."
    return page.get_by_role("region", name=title)


def test_the_admins_see_a_banner_on_the_keys_pages_until_one_dismisses_it(
    on_screen: NewContext, live_app: LiveApp, screen: str
) -> None:
    phone = screen == "phone"
    name = (
        f"Leaky {uuid.uuid4().hex[:6]} with a long name that has to wrap inside the banner"  # this test's own
    )
    key = live_app.issue_key(name)
    report_leak(live_app, key)

    page = sign_in(on_screen(), ADMIN_EMAIL)
    page.goto("/settings/api-keys")
    region = banner(page, name, key)
    expect(region).to_be_visible()
    expect(region).to_contain_text(f"GitHub secret scanning reported it at {LEAK_URL}")
    expect(region.get_by_role("link", name=LEAK_URL)).to_have_attribute("href", LEAK_URL)
    row = page.locator("tr", has=page.get_by_role("link", name=name, exact=True))
    expect(row.locator(".badge")).to_have_text("Revoked")
    assert key not in page.content()
    check_page(page, phone=phone)

    # The key's own page shows it too.
    row.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(region).to_be_visible()
    check_page(page, phone=phone)

    # Another admin's session sees the same banner; dismissing it there (HTMX) hides it for everyone.
    other = sign_in(on_screen(), ADMIN_EMAIL)
    other.goto("/settings/api-keys")
    other_region = banner(other, name, key)
    other_region.get_by_role("button", name="Dismiss").click()
    expect(other_region).to_have_count(0)
    expect(other.get_by_text("Alert dismissed")).to_be_visible()
    assert other.url.endswith("/settings/api-keys")  # swapped in place, no page load
    check_page(other, phone=phone)

    page.reload()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(region).to_have_count(0)
    page.goto("/settings/api-keys")
    expect(region).to_have_count(0)


def test_the_banner_is_dismissed_without_javascript_too(new_context: NewContext, live_app: LiveApp) -> None:
    name = f"Leaky {uuid.uuid4().hex[:6]}"
    key = live_app.issue_key(name)
    report_leak(live_app, key)

    page = sign_in(new_context(java_script_enabled=False), ADMIN_EMAIL)
    page.goto("/settings/api-keys")
    page.get_by_role("link", name=name, exact=True).click()
    region = banner(page, name, key)
    expect(region).to_be_visible()
    key_page = page.url
    region.get_by_role("button", name="Dismiss").click()
    page.wait_for_load_state()
    assert page.url == key_page  # back on the key's page
    expect(region).to_have_count(0)
    page.goto("/settings/api-keys")
    expect(region).to_have_count(0)
