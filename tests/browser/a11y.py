"""Checks any browser test can run on any page: an axe-core scan that fails on any violation, no sideways
scrolling, touch targets of at least 44 px, and the two screen widths every staff page is tried at.

axe-core is vendored (vendor/axe-core-*/README.md) and injected with add_script_tag from a same-origin URL that
the test answers itself: the pages' CSP (script-src 'self') stays on, so a scan never hides a CSP mistake.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route

AXE_VERSION = "4.14.1"
AXE_FILE = Path(__file__).parent / "vendor" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
AXE_URL = "/__tests__/axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENS = {"desktop": DESKTOP, "phone": PHONE}
MIN_TARGET_PX = 44
# What a finger has to hit; links inside running text are exempt (WCAG 2.5.8), and so are hidden elements.
TARGETS = "button, a.button, input:not([type=hidden]), select, textarea, nav a, .mainnav a, .account button"


def _serve_axe(route: Route) -> None:
    route.fulfill(path=str(AXE_FILE), content_type="text/javascript")


def assert_accessible(
    page: Page, include: str | None = None, *, third_party: Mapping[str, str] | None = None
) -> None:
    """axe-core's WCAG 2.x A/AA rules and its best practices on the page (or only on `include`, e.g. an open
    dialog): any violation fails, with what and where. `third_party` maps a rule to the markup of a vendored
    bundle (a CSS selector) that may break it and that we cannot change: only those nodes, of only that rule."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.route(f"**{AXE_URL}", _serve_axe)
        page.add_script_tag(url=AXE_URL)
    found: list[dict[str, Any]] = page.evaluate(
        """async ([include, allowed]) => {
             const results = await window.axe.run(include ? { include: [include] } : document,
                                                   { resultTypes: ["violations"], elementRef: true });
             return results.violations
               .map(v => ({ ...v, nodes: v.nodes
                 .filter(node => !(allowed[v.id] && node.element && node.element.closest(allowed[v.id])))
                 .map(({ element, ...node }) => node) }))
               .filter(v => v.nodes.length > 0);
           }""",
        [include, dict(third_party or {})],
    )
    violations = [
        {
            "rule": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [
                {"target": node["target"], "summary": node.get("failureSummary", "")}
                for node in violation["nodes"][:5]
            ],
        }
        for violation in found
    ]
    assert not violations, f"axe-core on {page.url}:\n{json.dumps(violations, indent=2, ensure_ascii=False)}"


def assert_no_horizontal_scroll(page: Page) -> None:
    widths = page.evaluate(
        "() => ({ page: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth })"
    )
    if widths["page"] > widths["viewport"]:
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                 .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                 .slice(0, 8).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                                       + (e.className && typeof e.className === 'string' ? '.' + e.className : ''))"""
        )
        raise AssertionError(f"{page.url} is {widths['page']} px wide at {widths['viewport']} px: {wide}")


def assert_touch_targets(page: Page, within: str = "body") -> None:
    """Every visible control is at least 44 by 44 px (checkboxes count with their label)."""
    small = page.evaluate(
        """([within, selector, min]) => [...document.querySelector(within).querySelectorAll(selector)]
             .filter(e => e.checkVisibility())
             .map(e => {
               const target = (e.type === 'checkbox' || e.type === 'radio') && e.closest('label') || e;
               const box = target.getBoundingClientRect();
               return { what: e.outerHTML.slice(0, 90), width: Math.round(box.width), height: Math.round(box.height) };
             })
             .filter(t => t.width < min || t.height < min)""",
        [within, TARGETS, MIN_TARGET_PX],
    )
    assert not small, f"controls smaller than {MIN_TARGET_PX} px on {page.url}: {small}"


def check_page(page: Page, *, phone: bool, third_party: Mapping[str, str] | None = None) -> None:
    """What every staff page must pass at the width it is shown at."""
    assert_accessible(page, third_party=third_party)
    if phone:
        assert_no_horizontal_scroll(page)
        assert_touch_targets(page)
