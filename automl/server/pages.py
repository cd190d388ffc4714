"""How the web view's pages are answered: its templates, its security headers, the way to the login
page, and the not-found page.

What must stay true: every page is rendered with HTML escaping on and carries a Content-Security-
Policy that allows scripts, styles and connections from this server alone (no inline script, no
CDN, nothing from the internet), and may not be framed (the Cancel button cannot be clicked
through another site's page); a page is never cached, since it shows one user's jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

    from automl.store.users import UserView

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_URL = "/assets"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_templates: Jinja2Templates | None = None


def templates() -> Jinja2Templates:
    """The pages' Jinja2 templates (autoescaped), loaded once per process."""
    global _templates
    if _templates is None:
        import jinja2
        from fastapi.templating import Jinja2Templates

        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
        _templates = Jinja2Templates(env=env)
    return _templates


def page(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """The template ``name`` rendered for ``request``, with the pages' security headers."""
    context = {"static": STATIC_URL, "user": None, **context}
    return templates().TemplateResponse(request, name, context, status_code=status_code, headers=PAGE_HEADERS)


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this server (``/jobs/...``), else ``default``: a login link
    cannot send the browser on to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def login_redirect(request: Request) -> Response:
    """Send a browser without a live token to ``/login``, to come back here after.

    A browser that followed a link from another site sends no SameSite=Strict cookie with that
    first request; it is asked to load the page once more from this site (which sends the cookie)
    before it is taken for logged out. The second request is same-site, so this never loops.
    """
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("sec-fetch-site") == "cross-site":
        return page(request, "reload.html", {"target": here})
    return RedirectResponse(f"/login?{urlencode({'next': here})}", status_code=303, headers={"Cache-Control": "no-store"})


def not_found_page(request: Request, what: str, user: UserView | None = None) -> HTMLResponse:
    """The 404 page: ``what`` is not there, or is not the caller's (the two look the same)."""
    return page(request, "not_found.html", {"what": what, "user": user}, status_code=404)
