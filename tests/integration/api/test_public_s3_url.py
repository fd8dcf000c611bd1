"""Presigned upload URLs name the S3 endpoint clients reach (COURSECAST_S3_PUBLIC_URL), and work there.

In docker-compose.yml the services reach S3 as `http://s3:9000` and clients as `http://localhost:9000`,
two names of one server. Here the api reaches the local S3 at 127.0.0.1 and is told that clients reach
it as `localhost`: every part URL must name `localhost`, and a client that PUTs the parts there (a
SigV4 signature over that host) completes the upload.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from services.core.settings import Settings
from tests.support.api import api_of_own, direct_upload


def test_part_urls_name_the_public_endpoint_and_a_client_uploads_through_it(
    settings: Settings, clip: Path
) -> None:
    internal = urlsplit(settings.s3_endpoint_url)
    assert internal.hostname == "127.0.0.1", "the local stack's S3 is expected on 127.0.0.1"
    public = f"localhost:{internal.port}"
    body = clip.read_bytes()
    with (
        api_of_own(settings, api_update={"s3_public_url": f"http://{public}"}) as stack,
        stack.instructor() as client,
    ):
        opened = client.post("/v1/uploads", json={"filename": "lecture.mp4", "size_bytes": len(body)})
        done = direct_upload(client, "강의.mp4", body)
    assert opened.status_code == 201, opened.text
    urls = [urlsplit(part["url"]) for part in opened.json()["parts"]]
    assert urls
    assert {url.netloc for url in urls} == {public}
    assert all("X-Amz-Signature=" in url.query for url in urls)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "completed"
