"""The dashboard's files: the vendored hls.js is the pinned release, nothing loads from elsewhere, and
the Content-Security-Policy leaves no door open (no inline script or style, no eval, no foreign origin
but the CDN's media)."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser

from services.api.routes.dashboard import STATIC_DIR, cdn_origin, content_security_policy, security_headers
from services.core.settings import Settings

HLS_VERSION = "1.7.4"


def test_the_vendored_hls_js_is_the_pinned_release_with_its_checksum_and_licence() -> None:
    vendor = STATIC_DIR / "vendor"
    expected = dict(line.split()[::-1] for line in (vendor / "SHA256SUMS").read_text().splitlines())
    assert set(expected) == {"hls.min.mjs"}
    body = (vendor / "hls.min.mjs").read_bytes()
    assert hashlib.sha256(body).hexdigest() == expected["hls.min.mjs"]
    assert f'"{HLS_VERSION}"'.encode() in body
    assert "Apache License" in (vendor / "hls.js.LICENSE").read_text()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script":
            self.scripts.append(dict(attrs))
        if tag == "style" or "style" in names or any(name.startswith("on") for name in names):
            self.inline.append(tag)

    def handle_data(self, data: str) -> None:
        if self.lasttag == "script" and data.strip():
            self.inline.append("script")


def test_the_page_has_no_inline_script_or_style_and_loads_nothing_from_another_origin() -> None:
    page = _Page()
    page.feed((STATIC_DIR / "index.html").read_text())
    assert page.inline == []
    assert [script.get("src") for script in page.scripts] == ["/dashboard/app.js"]
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC_DIR / name).read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), name
        assert not re.search(r"""(import|from)\s*\(?\s*["'](https?:)?//""", text), name
    app = (STATIC_DIR / "app.js").read_text()
    assert 'from "./vendor/hls.min.mjs"' in app
    assert "innerHTML" not in app  # API text is set as textContent only


def test_the_policy_allows_only_the_api_itself_and_the_cdn_media() -> None:
    settings = Settings(cdn_base_url="https://media.example.org/coursecast")
    assert cdn_origin(settings) == "https://media.example.org"
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in content_security_policy(settings).split("; ")
    )
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'", "https://media.example.org"]
    assert directives["media-src"] == ["'self'", "blob:", "https://media.example.org"]
    assert directives["img-src"] == ["'self'", "https://media.example.org"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    policy = content_security_policy(settings)
    assert "unsafe" not in policy
    assert "*" not in policy
    headers = security_headers(settings)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
