"""Presigned upload URLs are signed for the endpoint clients reach (COURSECAST_S3_PUBLIC_URL).

Inside a deployment the services reach S3 by a name clients cannot resolve (`http://s3:9000` in
docker-compose.yml). SigV4 signs the Host header, so a URL must be signed for the public name from
the start (rewriting its host afterwards would break the signature), and with SigV4: botocore's
default for presigning is SigV2, which Versity's gateway (docker-compose.yml's S3) refuses.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from services.core.settings import Settings
from services.core.storage import presigning_client, s3_client

PART = {"Bucket": "coursecast", "Key": "uploads/u-1/lecture.mp4", "UploadId": "up-1", "PartNumber": 2}


def presigned_part_url(settings: Settings) -> str:
    return presigning_client(settings).generate_presigned_url("upload_part", Params=PART, ExpiresIn=600)


def test_part_urls_are_signed_for_the_public_endpoint_while_the_services_keep_theirs() -> None:
    settings = Settings(s3_endpoint_url="http://s3:9000", s3_public_url="http://localhost:9000")
    url = urlsplit(presigned_part_url(settings))
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc, url.path) == (
        "http",
        "localhost:9000",
        "/coursecast/uploads/u-1/lecture.mp4",
    )
    assert (query["uploadId"], query["partNumber"]) == (["up-1"], ["2"])
    # SigV4 (never botocore's default SigV2 for presigning): the host and the query are signed.
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Credential"][0].endswith("/us-east-1/s3/aws4_request")
    assert query["X-Amz-Expires"] == ["600"]
    assert s3_client(settings).meta.endpoint_url == "http://s3:9000"


def test_without_a_public_url_part_urls_use_the_endpoint_itself() -> None:
    settings = Settings(s3_endpoint_url="http://127.0.0.1:9000")
    assert urlsplit(presigned_part_url(settings)).netloc == "127.0.0.1:9000"
