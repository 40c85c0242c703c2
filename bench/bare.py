"""The framework's own speed: a bare Litestar app answering the product's very bytes, with no auth and no database.

`python -m bench.bare` runs it on the web server command's own uvicorn options (`app.server.uvicorn_options`:
uvloop, httptools, no access log, WEB_CONCURRENCY processes). BENCH_BARE_FILE names a JSON file of captured
answers, `{"GET /api/v1/services": {"status": 200, "media_type": "...", "body": "<base64>"}, ...}`, each
served at its path whatever the query string (`{item:str}` in a path: any item, as a parsed path parameter
like the product's) (bench/endtoend.py captures them from the product).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, Response, route
from litestar.types import Method

from app.server import uvicorn_options
from app.settings import Settings


def _handler(method: Method, path: str, status: int, media_type: str, body: bytes) -> Any:
    if "{item:str}" in path:  # an item's route, as the product's: a path parameter, parsed

        @route(path, http_method=[method], status_code=status, media_type=media_type, sync_to_thread=False)
        def item_answer(item: str) -> Response[bytes]:
            return Response(body, status_code=status, media_type=media_type)

        return item_answer

    @route(path, http_method=[method], status_code=status, media_type=media_type, sync_to_thread=False)
    def answer() -> Response[bytes]:
        return Response(body, status_code=status, media_type=media_type)

    return answer


def create_bare_app() -> Litestar:
    answers: dict[str, dict[str, Any]] = json.loads(Path(os.environ["BENCH_BARE_FILE"]).read_text())
    handlers = []
    for name, answer in answers.items():
        method, path = name.split(" ", 1)
        body = base64.b64decode(answer["body"])
        handlers.append(_handler(method, path, int(answer["status"]), str(answer["media_type"]), body))  # type: ignore[arg-type]
    return Litestar(route_handlers=handlers, debug=False, openapi_config=None)


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(
        "bench.bare:create_bare_app",
        host="127.0.0.1",
        workers=settings.web_concurrency,
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    main()
