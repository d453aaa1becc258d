"""The API docs page (`/docs`), served whole from this server: it must work offline.

FastAPI's default page loads Swagger UI's script and styles from a CDN, so on
a machine without internet it is blank (`SwaggerUIBundle is not defined`).
Here Swagger UI 5 (FastAPI writes OpenAPI 3.1, which Swagger UI 4 cannot show)
comes from the files shipped in the `swagger-ui-py` package (Apache-2.0), mounted
under `/docs/static`; none of that package's code is used. ReDoc is off.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs/static"
# The package's files, found without importing it: swagger-ui-bundle.js, swagger-ui.css, favicons.
FILES = Path(find_spec("swagger_ui").submodule_search_locations[0]) / "static"


def serve_docs(app: FastAPI) -> None:
    """Call with `FastAPI(docs_url=None, redoc_url=None)`: adds `/docs` and its files."""
    app.mount(STATIC, StaticFiles(directory=FILES), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                                   swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC}/favicon-32x32.png")
