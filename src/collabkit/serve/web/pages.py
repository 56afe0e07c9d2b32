"""The pages people use, served by the API's own app: five templates, static JS/CSS, Plotly.

Every page is a thin client of the JSON API under /v1 (the same calls any client makes); the
templates hold no data, the scripts put text from data into the DOM with ``textContent`` only.
Plotly's JavaScript is served from the installed ``plotly`` package, so nothing is fetched from
outside the server (and the Content-Security-Policy forbids it).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
PAGES = [  # path, template, title, page script, uses Plotly (nav order)
    ("/", "start.html", "Start here", "start.js", False),
    ("/for-you", "for_you.html", "For you", "for_you.js", False),
    ("/map", "map.html", "Map of tastes", "map.js", True),
    ("/admin", "admin.html", "Admin", "admin.js", False),
    ("/monitor", "monitor.html", "Monitor", "monitor.js", True),
]
# same-origin only; Plotly sets inline styles on its elements
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


def _page(path: str, template: str, title: str, script: str, plotly: bool) -> None:
    def page(request: Request) -> HTMLResponse:
        context = {"title": title, "path": path, "script": script, "plotly": plotly,
                   "pages": [{"path": p[0], "title": p[2]} for p in PAGES]}  # fmt: skip
        response = templates.TemplateResponse(request, template, context)
        response.headers["content-security-policy"] = CSP
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "no-referrer"
        return response

    router.add_api_route(path, page, methods=["GET"], response_class=HTMLResponse, name=template)


for _args in PAGES:
    _page(*_args)


@router.get("/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    """Plotly's bundle, from the installed plotly package (never copied into this one)."""
    try:
        path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.exists():
        raise HTTPException(404, "plotly is not installed: pip install plotly (charts need it)")
    return FileResponse(path, media_type="text/javascript",
                        headers={"cache-control": "public, max-age=86400"})  # fmt: skip


SWAGGER = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def _swagger_file(name: str) -> Path | None:
    """One of Swagger UI's files from the installed fastapi-offline package, or None without it."""
    try:
        path = Path(str(files("fastapi_offline") / "static" / name))
    except ModuleNotFoundError:
        return None
    return path if path.exists() else None


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    """Swagger UI over /openapi.json, its script and styles served from here (works offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    if any(_swagger_file(name) is None for name in SWAGGER):
        raise HTTPException(404, "API docs need the fastapi-offline package; the OpenAPI document is at /openapi.json")
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title="collabkit API", oauth2_redirect_url=None,
        swagger_js_url="/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/vendor/swagger-ui/swagger-ui.css", swagger_favicon_url="data:,",
    )  # fmt: skip


@router.get("/vendor/swagger-ui/{name}")
def swagger_asset(name: str) -> FileResponse:
    path = _swagger_file(name) if name in SWAGGER else None
    if path is None:
        raise HTTPException(404, f"no such file: {name}")
    return FileResponse(path, media_type=SWAGGER[name], headers={"cache-control": "public, max-age=86400"})


def mount(app: FastAPI) -> None:
    """Add the pages, Plotly and the static assets to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
