"""`python -m app.server`: the web server, as the Procfile's web process and `make run` start it.

uvicorn on uvloop and httptools, with the settings that are the app's business: it believes X-Forwarded-For / X-Forwarded-Proto only
from TRUSTED_PROXIES (uvicorn alone would trust 127.0.0.1), and logs request lines only when ACCESS_LOG=1,
without their query strings (a key sent as `?api_key=` must not end up in a log) and with anything
key-shaped in their paths cut to its display prefix (a key pasted into a URL path). It runs WEB_CONCURRENCY
worker processes, by default one per CPU.
"""

from __future__ import annotations

import argparse
import copy
import logging
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from app.domain.api_keys.rules import mask_keys
from app.settings import Settings

APP = "app.asgi:create_app"


def redacted_path(path: str) -> str:
    """The path without its query string, each key-shaped part cut to the prefix the key page shows."""
    return mask_keys(path.split("?", 1)[0])


class RedactRequestTarget(logging.Filter):
    """uvicorn's access line is `%s - "%s %s HTTP/%s" %d` with the path and query string as third argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redacted_path(args[2]), *args[3:])
        return True


def log_config() -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_request_target"] = {"()": f"{__name__}.RedactRequestTarget"}
    config["handlers"]["access"]["filters"] = ["redact_request_target"]
    return config


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "factory": True,
        # The speedups are production dependencies: named, so a missing one fails the start, not the speed.
        "loop": "uvloop",
        "http": "httptools",
        "port": settings.port,
        "proxy_headers": bool(settings.trusted_proxies),
        # An empty list trusts nobody; uvicorn's own default would be 127.0.0.1.
        "forwarded_allow_ips": [str(network) for network in settings.trusted_proxies],
        "access_log": settings.access_log,
        "log_config": log_config(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (0.0.0.0: all).")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Worker processes (default: WEB_CONCURRENCY, else one per CPU).",
    )
    arguments = parser.parse_args(argv)
    settings = Settings.from_env()
    workers = arguments.workers if arguments.workers is not None else settings.web_concurrency
    uvicorn.run(APP, host=arguments.host, workers=workers, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
