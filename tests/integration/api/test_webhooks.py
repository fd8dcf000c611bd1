"""POST/GET/DELETE /v1/webhooks on a real api: the secret is shown once, endpoints are personal, a
hostile URL is a 422 problem naming the field, and a rotation keeps the previous secret for a while."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.core.settings import Settings
from tests.support.api import ApiStack

PROBLEM = "application/problem+json"


def problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = answer.json()
    return body


def test_an_endpoint_is_registered_with_a_secret_shown_once_listed_and_deleted(api_stack: ApiStack) -> None:
    with api_stack.instructor() as kim, api_stack.instructor() as lee:
        created = kim.post("/v1/webhooks", json={"url": "https://hooks.example.com/cc?team=7"})
        assert created.status_code == 201, created.text
        hook = created.json()
        assert created.headers["location"] == f"/v1/webhooks/{hook['webhook_id']}"
        assert hook["secret"].startswith("whsec_")
        assert hook["events"] == ["course.completed", "course.failed", "course.canceled"]

        listed = kim.get("/v1/webhooks").json()["items"]
        assert [h["webhook_id"] for h in listed] == [hook["webhook_id"]]
        assert "secret" not in listed[0]
        assert "secret" not in kim.get(f"/v1/webhooks/{hook['webhook_id']}").json()

        # Another user neither sees nor deletes it.
        assert lee.get("/v1/webhooks").json()["items"] == []
        problem(lee.get(f"/v1/webhooks/{hook['webhook_id']}"), 404)
        problem(lee.delete(f"/v1/webhooks/{hook['webhook_id']}"), 404)

        assert kim.delete(f"/v1/webhooks/{hook['webhook_id']}").status_code == 204
        assert kim.get("/v1/webhooks").json()["items"] == []
        problem(kim.delete(f"/v1/webhooks/{hook['webhook_id']}"), 404)


def test_a_subscription_to_some_events_keeps_only_those(api_stack: ApiStack) -> None:
    with api_stack.instructor() as kim:
        created = kim.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:9/x", "events": ["course.failed", "course.failed"]},
        )
        assert created.status_code == 201, created.text
        assert created.json()["events"] == ["course.failed"]
        for events in ([], ["course.started"], ["COURSE.FAILED"], "course.failed"):
            refused = problem(
                kim.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": events}), 422
            )
            assert "events" in refused["detail"]


@pytest.mark.parametrize(
    ("url", "mention"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "http:// or https://"),
        ("https://admin:hunter2@example.com/hook", "user name or password"),
        ("https://example.com/\u0000", "U+0000"),
        ("https://example.com/\r\nX-Injected: 1", "U+000D"),
        ("https://example.com/a b", "space"),
        ("https://exämple.com/", "ASCII"),
        ("https://example.com/#x", "fragment"),
        ("https://example.com:70000/", "not a valid URL"),
        ("not a url", "space"),
    ],
)
def test_a_hostile_url_is_a_422_problem_naming_the_field(api_stack: ApiStack, url: str, mention: str) -> None:
    with api_stack.instructor() as kim:
        refused = problem(kim.post("/v1/webhooks", json={"url": url}), 422)
        assert refused["field"] == "url"
        assert mention in refused["detail"]
        assert kim.get("/v1/webhooks").json()["items"] == []


def test_an_overlong_url_or_unknown_member_is_refused(api_stack: ApiStack) -> None:
    with api_stack.instructor() as kim:
        problem(kim.post("/v1/webhooks", json={"url": "https://example.com/" + "a" * 2100}), 422)
        problem(kim.post("/v1/webhooks", json={"url": "https://example.com/", "secret": "mine"}), 422)
        problem(kim.post("/v1/webhooks", json={}), 422)
        problem(api_stack.client().post("/v1/webhooks", json={"url": "https://example.com/"}), 401)


def test_one_user_has_at_most_the_allowed_number_of_endpoints(api_stack: ApiStack) -> None:
    limit = Settings().webhook_max_endpoints_per_user
    with api_stack.instructor() as kim:
        for n in range(limit):
            assert kim.post("/v1/webhooks", json={"url": f"https://example.com/{n}"}).status_code == 201
        refused = problem(kim.post("/v1/webhooks", json={"url": "https://example.com/one-more"}), 422)
        assert refused["limit"] == limit


def test_rotating_a_secret_shows_a_new_one_and_keeps_the_previous_for_a_while(api_stack: ApiStack) -> None:
    with api_stack.instructor() as kim, api_stack.instructor() as lee:
        hook = kim.post("/v1/webhooks", json={"url": "https://example.com/h"}).json()
        assert hook["previous_secret_expires_at"] is None
        rotated = kim.post(f"/v1/webhooks/{hook['webhook_id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["secret"] not in (hook["secret"], None)
        assert rotated.json()["previous_secret_expires_at"] is not None
        problem(lee.post(f"/v1/webhooks/{hook['webhook_id']}/rotate-secret"), 404)
