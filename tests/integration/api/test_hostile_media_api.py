"""The api refuses playlists, polyglots and oversized images at upload, and its ffprobe opens nothing else.

Each hostile file points at a loopback HTTP server this test starts (which must see no connection)
and at a local secret FIFO (which must never be opened), through both ways in: the multipart
`POST /v1/courses` and the direct-upload route.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.api import ApiStack, direct_upload
from tests.support.hostile_media import HOSTILE_KINDS, huge_png, loopback_server, secret_fifo

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.mark.parametrize("kind", sorted(HOSTILE_KINDS))
def test_a_playlist_or_polyglot_disguised_as_mp4_gets_415_with_no_outbound_request_and_no_file_read(
    api_stack: ApiStack, tmp_path: Path, kind: str
) -> None:
    build: Callable[[str, str], bytes] = HOSTILE_KINDS[kind]
    _, token = api_stack.user()
    with loopback_server() as server, secret_fifo(tmp_path) as secret:
        # The loopback URL first: before this change the api's ffprobe fetched it over the network.
        body = build(f"{server.base_url}/{kind}.mp4", f"file://{secret.path}")
        with api_stack.client(token) as client:
            posted = client.post(
                "/v1/courses",
                data={"name": "Hostile", "curriculum": "CS-101"},
                files=[("videos", ("lecture.mp4", body, "video/mp4"))],
            )
            completed = direct_upload(client, "lecture.mp4", body)
        assert server.connections == 0, server.paths
        assert not secret.opened.is_set(), "the api's ffprobe opened the local secret file"
    for answer in (posted, completed):
        assert answer.status_code == 415, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
        assert answer.json()["type"].endswith("not-a-video"), answer.json()
        assert answer.json()["filename"] == "lecture.mp4"  # one check serves both routes


def test_a_16000_pixel_square_thumbnail_is_refused_at_upload_with_422(
    api_stack: ApiStack, tmp_path: Path, clip: Path
) -> None:
    image = huge_png(tmp_path / "poster.png").read_bytes()
    with api_stack.instructor() as client:
        posted = client.post(
            "/v1/courses",
            data={"name": "Big poster", "curriculum": "CS-101"},
            files=[
                ("videos", ("lecture.mp4", clip.read_bytes(), "video/mp4")),
                ("thumbnails", ("poster.png", image, "image/png")),
            ],
        )
        completed = direct_upload(client, "poster.png", image, kind="thumbnail")
    for answer in (posted, completed):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
        problem = answer.json()
        assert problem["type"].endswith("image-too-large"), problem
        assert "16000x16000" in problem["detail"]
        assert problem["limit_pixels"] == api_stack.settings.max_image_pixels
