"""The dashboard: /ui serves a single page and its static files from the package (orchestrator/ui/).

No build step and nothing from the internet: plain HTML, CSS and JavaScript written for
Dockyard, plus vendored xterm.js (orchestrator/ui/vendor/, versions and licences in
orchestrator/ui/VENDORED.md). The page holds no data and needs no token to load; everything it
shows comes from the /v1 API with the token the user logs in with (kept in sessionStorage),
so every view is an API call and every action the role check of that call.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ROOT = Path(__file__).resolve().parent.parent / "ui"
router = APIRouter(include_in_schema=False)
# the page may run only its own scripts and talk only to this server ('self' covers its WebSockets)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


@router.get("/ui")
def ui_slash() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
def ui_index() -> FileResponse:
    return FileResponse(ROOT / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP,
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=ROOT, check_dir=True), name="ui-static")
