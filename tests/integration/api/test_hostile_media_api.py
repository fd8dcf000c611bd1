"""The api refuses playlists, polyglots and oversized images at upload, and its ffprobe opens nothing else.

Each hostile file points at a loopback HTTP server this test starts (which must see no connection)
and at a local secret FIFO (which must never be opened), through both ways in: the multipart
`POST /v1/courses` and the direct-upload route.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.api.conftest import ApiStack
from tests.support.hostile_media import HOSTILE_KINDS, huge_png, loopback_server, secret_fifo

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def direct_upload(client: httpx.Client, filename: str, body: bytes, kind: str = "video") -> httpx.Response:
    """Open a direct upload, PUT its parts to S3, and ask the api to complete (and check) it."""
    upload = client.post("/v1/uploads", json={"filename": filename, "size_bytes": len(body), "kind": kind})
    assert upload.status_code == 201, upload.text
    etags, offset = [], 0
    for part in upload.json()["parts"]:
        chunk = body[offset : offset + part["size_bytes"]]
        offset += len(chunk)
        put = httpx.put(part["url"], content=chunk)
        assert put.status_code == 200, put.text
        etags.append({"part_number": part["part_number"], "etag": put.headers["ETag"]})
    return client.post(f"/v1/uploads/{upload.json()['upload_id']}/complete", json={"parts": etags})


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


def test_a_16000_pixel_square_thumbnail_is_refused_at_upload_with_422(
    api_stack: ApiStack, tmp_path: Path, clip: Path
) -> None:
    image = huge_png(tmp_path / "poster.png").read_bytes()
    _, token = api_stack.user()
    with api_stack.client(token) as client:
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
