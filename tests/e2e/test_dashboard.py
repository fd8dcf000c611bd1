"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against the real services.

An instructor publishes a course; the page, signed in with their token, shows the job queued, follows
it live over the SSE stream (read with fetch, the token in the Authorization header) through
processing to completed, lists the course's lecture, and plays it with the vendored hls.js from the
local S3 endpoint (a cross-origin read, allowed by CORS): `video.currentTime` advances, and the
rendition the viewer chooses has its playlist and segments loaded. No Content-Security-Policy
violation on the way.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, sync_playwright

from devtools.demo import create_instructor, make_lecture
from services.core.settings import Settings
from tests.support.services import running

STEP_TIMEOUT_MS = 120_000

# Kept by the page from its first script on (Playwright's init scripts are not subject to the CSP):
# every status a job row showed, in order, and every CSP violation.
OBSERVE = """
window.__statuses = {};
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
new MutationObserver((records) => {
  for (const record of records) {
    const row = record.target;
    if (!(row instanceof HTMLTableRowElement) || !row.dataset.jobId) continue;
    const seen = (window.__statuses[row.dataset.jobId] ||= []);
    if (seen[seen.length - 1] !== row.dataset.status) seen.push(row.dataset.status);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-status"] });
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium (apt, by devtools/stack/install.sh), headless, through executable_path."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "no chromium: `make install` apt-installs it (devtools/stack/install.sh)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        yield launched
        launched.close()


def time_advances(page: Page, seconds: float = 1.0) -> None:
    """Wait until the video has played `seconds` more than it has now."""
    start = page.evaluate("document.getElementById('video').currentTime")
    # A function, not an expression: the page's CSP forbids evaluating strings.
    page.wait_for_function(
        "(until) => document.getElementById('video').currentTime > until",
        arg=start + seconds,
        timeout=STEP_TIMEOUT_MS,
    )


def test_the_dashboard_follows_a_job_live_and_plays_the_chosen_rendition(
    own: Settings, tmp_path: Path, browser: Browser
) -> None:
    lecture = make_lecture(tmp_path / "lecture.mp4", seconds=20, size="640x360")
    with running(own, tmp_path) as services:
        services.projector()
        base = services.api()
        _, token = create_instructor(own)
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        with lecture.open("rb") as video:
            accepted = client.post(
                "/v1/courses",
                data={"name": "브라우저 강좌 (dashboard)", "curriculum": "WEB-101"},
                files={"videos": ("1강.mp4", video, "video/mp4")},
            )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]

        page = browser.new_page()
        page.add_init_script(OBSERVE)
        requests: list[Request] = []
        page.on("request", lambda request: requests.append(request))
        page.goto(base + "/")
        policy = page.evaluate("fetch('/').then(r => r.headers.get('content-security-policy'))")
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy

        # A wrong token is refused with the API's problem document, shown on the page.
        page.fill("#token", "cc_not-a-token")
        page.click("#sign-in-form button[type=submit]")
        page.wait_for_selector("#notice:not([hidden])")
        assert "unknown or revoked" in page.inner_text("#notice")

        # Signed in, the page follows the job's SSE stream with the token in a header, never in the URL.
        stream_url = f"{base}/v1/jobs/{job_id}/stream"
        with page.expect_request(lambda r: r.url == stream_url, timeout=STEP_TIMEOUT_MS) as streaming:
            page.fill("#token", token)
            page.click("#sign-in-form button[type=submit]")
        assert streaming.value.headers["authorization"] == f"Bearer {token}"
        row = f"tr[data-job-id='{job_id}']"
        page.wait_for_selector(f"{row}[data-status='queued']", timeout=STEP_TIMEOUT_MS)
        assert all(token not in r.url for r in requests)

        # Only now an encoder: the page must see the job start, progress and complete, live.
        services.encoder()
        page.wait_for_selector(f"{row}[data-status='completed']", timeout=STEP_TIMEOUT_MS)
        statuses = page.evaluate("window.__statuses")[job_id]
        assert statuses[0] == "queued", statuses
        assert statuses[-1] == "completed", statuses
        assert "processing" in statuses, statuses
        assert page.inner_text(f"{row} td.progress").strip() == "100%"

        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        (published,) = job["outputs"]["videos"]
        renditions = published["renditions"]
        assert len(renditions) >= 2, renditions
        master_dir = published["master_playlist_url"].rsplit("/", 1)[0]

        # Play (adaptive): the video plays from the local S3 endpoint, another origin than the page's.
        page.click(f"article[data-course-key='{job_id}'] button.play")
        page.wait_for_selector("#player-state[data-height]:not([data-height=''])", timeout=STEP_TIMEOUT_MS)
        time_advances(page)

        # The viewer chooses the rendition the player is not showing: its playlist and segments load.
        playing = int(page.get_attribute("#player-state", "data-height") or 0)
        index, chosen = next((i, r) for i, r in enumerate(renditions) if r["height"] != playing)
        before = len(requests)
        page.select_option("#rendition", str(chosen["height"]))
        page.wait_for_selector(f"#player-state[data-height='{chosen['height']}']", timeout=STEP_TIMEOUT_MS)
        time_advances(page)
        loaded = [r.url for r in requests[before:]]
        rendition_dir = f"{master_dir}/{index}/"
        # Its playlist was read (now, or earlier if adaptive playback had visited it: hls.js keeps a
        # VOD playlist), and its segments were fetched since the choice.
        assert f"{rendition_dir}index.m3u8" in [r.url for r in requests], loaded
        assert any(url.startswith(rendition_dir) and url.endswith(".ts") for url in loaded), loaded
        assert page.evaluate("document.getElementById('video').error") is None
        assert page.evaluate("window.__violations") == []

        # The stack's CORS: hls.js read those files cross-origin, and no write is allowed from a page.
        segment = next(url for url in loaded if url.endswith(".ts"))
        preflight = httpx.options(
            segment, headers={"Origin": base, "Access-Control-Request-Method": "GET"}, timeout=10
        )
        assert preflight.headers.get("access-control-allow-origin") in ("*", base)
        page.close()

    # The projector and the encoder stopped cleanly (uvicorn ends the api by re-raising SIGTERM).
    projector_code, _, encoder_code = services.codes
    assert (projector_code, encoder_code) == (0, 0), services.codes
