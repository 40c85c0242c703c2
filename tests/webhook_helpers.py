"""A local webhook receiver for tests: a real HTTP server on 127.0.0.1 that answers as scripted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from litestar import Litestar

from app.domain.audit.services import CLI_ACTOR
from app.domain.webhooks import rules, services
from app.domain.webhooks.delivery import Deliverer
from app.lib.clock import Clock
from app.lib.db import transaction
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff

ALL_EVENTS = list(rules.EVENT_TYPES)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)
    """Answers to give, in order; 200 once they run out."""
    received: list[Received] = field(default_factory=list)
    hold: threading.Event | None = None
    """When set, requests wait for it before answering (a worker can be killed meanwhile)."""
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def event_ids(self) -> list[str]:
        return [item.headers["quickvisit-event-id"] for item in self.received]


@contextmanager
def receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    state = Receiver(url="", statuses=list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            state.arrived.set()
            if state.hold is not None:
                state.hold.wait(30)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()


def deliverer(app: Litestar, clock: Clock, client: httpx.AsyncClient, **overrides: object) -> Deliverer:
    settings = app.state.settings
    options: dict[str, object] = {
        "engine": alchemy_of(app).get_engine(),  # the test side's engine: the app's is on another loop
        "clock": clock,
        "secret_key": settings.secret_key,
        "production": False,
        "client": client,
    }
    options.update(overrides)
    return Deliverer(**options)  # type: ignore[arg-type]


async def add_endpoint(
    app: Litestar, studio: Staff, url: str, events: list[str] = ALL_EVENTS
) -> services.WithSecret:
    async with transaction(alchemy_of(app)) as session:
        return await services.add(
            session,
            studio.organization.id,
            url,
            events,
            secret_key=app.state.settings.secret_key,
            production=False,
            actor=CLI_ACTOR,
        )
