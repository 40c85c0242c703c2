"""The interactive API docs: Swagger UI served by the app itself (vendored, pinned: static/swagger-ui-*/README.md),
started by a script file, so the page works offline and under the staff pages' strict CSP."""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

SWAGGER_UI_VERSION = "5.35.0"
_ASSETS = f"/static/swagger-ui-{SWAGGER_UI_VERSION}"


class SelfHostedSwaggerPlugin(OpenAPIRenderPlugin):
    def __init__(self, path: str = "/") -> None:
        # No inline favicon or <style>: the CSP allows neither. The page's <main> is Swagger UI's own (a second
        # one around it would be a landmark inside a landmark).
        super().__init__(path=path, favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema["info"]["title"]))
        schema_url = escape(self.get_openapi_json_route(request))
        return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="{_ASSETS}/swagger-ui.css">
  <link rel="stylesheet" href="/static/api-docs.css">
  <script src="{_ASSETS}/swagger-ui-bundle.js" defer></script>
  <script src="/static/api-docs.js" defer></script>
</head>
<body>
  <header class="docs-bar"><a href="/">← Back to QuickVisit</a></header>
  <div id="swagger-ui" data-openapi-url="{schema_url}"><p class="docs-loading">Loading the API reference…</p></div>
</body>
</html>""".encode()
