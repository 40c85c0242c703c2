"""The demo website of `make run`: a stand-in for a customer's own site, on a second origin, embedding the widget.

Two static files, with the API address and key filled in, and a strict Content-Security-Policy like a careful
customer would send: it shows the widget needs nothing inline. Also `python -m app.devsite --help`.

`/webhooks` is a webhook receiver: POSTs to it are kept (the last 50) and the page lists them, with whether
each signature verifies against the secret it was given, in the few lines docs/WEBHOOKS.md shows.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import hmac
import html
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

SITE_DIR = Path(__file__).parent
WEBHOOKS_PATH = "/webhooks"
KEPT_EVENTS = 50


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """A receiver's check of `QuickVisit-Signature`, as docs/WEBHOOKS.md gives it."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, received = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received)


def content_security_policy(api_url: str) -> str:
    return (
        f"default-src 'self'; script-src 'self' {api_url}; style-src 'self' {api_url}; "
        f"connect-src {api_url}; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"
    )


def render_page(api_url: str, api_key: str) -> bytes:
    page = (SITE_DIR / "index.html").read_text()
    page = page.replace("{api_url}", html.escape(api_url)).replace("{api_key}", html.escape(api_key))
    return page.encode()


class DemoSiteServer(ThreadingHTTPServer):
    daemon_threads = True  # an open keep-alive connection must not hold up Ctrl-C

    def __init__(
        self, address: tuple[str, int], api_url: str, api_key: str, webhook_secret: str | None = None
    ) -> None:
        self.webhook_secret = webhook_secret
        # (arrival, event id, type, verified), newest first; shared by the handler threads.
        self.received: collections.deque[tuple[str, str, str, bool]] = collections.deque(maxlen=KEPT_EVENTS)
        self.files: dict[str, tuple[bytes, str]] = {
            "/site.css": ((SITE_DIR / "site.css").read_bytes(), "text/css; charset=utf-8"),
        }
        self.embed(api_url, api_key)
        super().__init__(address, _Handler)

    def embed(self, api_url: str, api_key: str) -> None:
        """Point the page's widget at this app and key (a test learns the site's origin, port 0, only once
        the server is bound, and only then can it issue a key for that origin)."""
        self.files["/"] = (render_page(api_url, api_key), "text/html; charset=utf-8")
        self.csp = content_security_policy(api_url)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server_version = "DemoSite"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_POST(self) -> None:
        server = cast(DemoSiteServer, self.server)
        if self.path.split("?", 1)[0] != WEBHOOKS_PATH:
            self._send(404, b"Not found\n", "text/plain; charset=utf-8")
            return
        body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1 << 20))
        secret = server.webhook_secret
        verified = bool(secret) and verify(secret or "", self.headers.get("QuickVisit-Signature", ""), body)
        try:
            event = json.loads(body)
            event_id, event_type = str(event.get("id", "?")), str(event.get("type", "?"))
        except (ValueError, AttributeError):
            event_id, event_type = "?", "not JSON"
        server.received.appendleft((time.strftime("%H:%M:%S"), event_id, event_type, verified))
        self._send(200, b"", "text/plain; charset=utf-8")

    def _webhooks_page(self) -> bytes:
        server = cast(DemoSiteServer, self.server)
        rows = "".join(
            f"<tr><td>{html.escape(at)}</td><td><code>{html.escape(kind)}</code></td>"
            f"<td><code>{html.escape(event_id)}</code></td>"
            f"<td>{'Signature verified' if ok else 'Signature does not match'}</td></tr>"
            for at, event_id, kind, ok in list(server.received)
        )
        return (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Webhooks received</title>"
            "<link rel='stylesheet' href='/site.css'></head><body><main><h1>Webhooks received</h1>"
            f"<p>Events POSTed to {html.escape(server.url + WEBHOOKS_PATH)}, newest first (reload to update).</p>"
            "<table><thead><tr><th>Arrived</th><th>Type</th><th>Event id</th><th>Signature</th></tr></thead>"
            f"<tbody>{rows or '<tr><td colspan=4>Nothing yet: book in the widget.</td></tr>'}</tbody></table>"
            "</main></body></html>"
        ).encode()

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        server = cast(DemoSiteServer, self.server)
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        found = server.files.get("/" if path == "/index.html" else path)
        if path == WEBHOOKS_PATH:
            found = (self._webhooks_page(), "text/html; charset=utf-8")
        if found is None:
            body, content_type, status = b"Not found\n", "text/plain; charset=utf-8", 404
        else:
            (body, content_type), status = found, 200
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", server.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: `make run` already prints the app's requests."""


def start(
    api_url: str, api_key: str, host: str = "127.0.0.1", port: int = 0, webhook_secret: str | None = None
) -> DemoSiteServer:
    """Serve the site from a daemon thread (port 0: any free port); stop it with `.shutdown()`."""
    server = DemoSiteServer((host, port), api_url.rstrip("/"), api_key, webhook_secret)
    threading.Thread(target=server.serve_forever, name="demo-site", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.devsite", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--api-url", default="http://127.0.0.1:8000", help="where the app runs")
    parser.add_argument("--api-key", required=True, help="a key whose allowed origins include this site")
    args = parser.parse_args(argv)
    with DemoSiteServer((args.host, args.port), args.api_url.rstrip("/"), args.api_key) as server:
        print(f"Demo website on {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
            server.serve_forever()
    return 0
