"""The dashboard: one static page at `/` — sign in with a token, jobs with live progress, courses, a player.

The page is plain files shipped in the wheel (services/api/static/): an HTML page, one JavaScript
module and the vendored hls.js (pinned, checksummed in static/vendor/SHA256SUMS). No build step, no
CDN. It calls the same /v1/ API as any client, with the token in the Authorization header — also for
the live progress: the page reads the SSE stream with fetch() rather than EventSource (which cannot
send headers), so the token never travels in a URL (where logs and proxies would keep it) nor in a
cookie (which a cross-site request would carry); and a refused stream is still a problem document.

Every response of the dashboard carries a strict Content-Security-Policy: scripts, styles and
requests only from the api itself, plus the CDN origin (`cdn_base_url`) for the published playlists,
segments and images; media from `blob:` (hls.js feeds the <video> through Media Source Extensions);
no inline script, no plugin, no framing.
"""

from __future__ import annotations

import mimetypes
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from services.api.runtime import Services
from services.core.settings import Settings

STATIC_DIR = Path(str(resources.files("services.api").joinpath("static")))
# Where the page's own files are served from (the page itself is at `/`).
ASSETS_PATH = "/dashboard"
# A JavaScript module must be served as JavaScript: Python 3.11's table does not know `.mjs`.
mimetypes.add_type("text/javascript", ".mjs")

router = APIRouter(include_in_schema=False)


def cdn_origin(settings: Settings) -> str:
    """scheme://host[:port] of the published media, for the CSP (pure)."""
    url = urlsplit(settings.cdn_base_url)
    return f"{url.scheme}://{url.netloc}"


def content_security_policy(settings: Settings) -> str:
    """The dashboard's policy: its own files and API, the CDN's media, nothing else (pure)."""
    cdn = cdn_origin(settings)
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' {cdn}",
            f"media-src 'self' blob: {cdn}",
            f"connect-src 'self' {cdn}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def security_headers(settings: Settings) -> dict[str, str]:
    """The headers of every dashboard response."""
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # Revalidated on each load, so a new version of the page is never mixed with an old script.
        "Cache-Control": "no-cache",
    }


def _settings(request: Request | Scope) -> Settings:
    app = request.app if isinstance(request, Request) else request["app"]
    services: Services = app.state.services
    return services.settings


@router.api_route("/", methods=["GET", "HEAD"])
async def dashboard(request: Request) -> FileResponse:
    """The dashboard page."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html", headers=security_headers(_settings(request))
    )


class DashboardFiles(StaticFiles):
    """The page's script, style and vendored hls.js, with the dashboard's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file at `path`, or the 404/405 StaticFiles answers, with the security headers."""
        response = await super().get_response(path, scope)
        response.headers.update(security_headers(_settings(scope)))
        return response


def assets() -> DashboardFiles:
    """The app to mount at ASSETS_PATH."""
    return DashboardFiles(directory=STATIC_DIR)
