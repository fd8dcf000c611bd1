"""The api over HTTP: a bearer-authenticated httpx client whose refusals are the API's problem documents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson

# Long enough for a course form of upload ids (the api copies the uploads server side before it answers).
TIMEOUT_S = 120.0


class ApiError(Exception):
    """The api refused (an RFC 9457 problem document), or could not be reached."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        title = str(problem.get("title") or f"HTTP {status}")
        detail = problem.get("detail")
        super().__init__(f"{title}: {detail}" if detail else title)


def _problem_of(response: httpx.Response) -> ApiError:
    try:
        document = response.json()
    except ValueError:
        document = {"detail": response.text[:500]}
    return ApiError(response.status_code, document if isinstance(document, dict) else {"detail": document})


class ApiClient:
    """The api at `base_url`, called with `token`; every method raises ApiError on a refusal."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=TIMEOUT_S,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a 2xx response."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, {"title": "API unreachable", "detail": f"{self.http.base_url}: {exc}"}) from exc
        if response.is_error:
            raise _problem_of(response)
        return response.json()

    def events(self, path: str) -> Iterator[tuple[str, Any]]:
        """(event, data) of a Server-Sent Events stream, until the server ends it."""
        with self.http.stream("GET", path, headers={"Accept": "text/event-stream"}, timeout=None) as stream:
            if stream.is_error:
                stream.read()
                raise _problem_of(stream)
            kind, data = "message", list[str]()  # the event being read: its type and data lines
            for line in stream.iter_lines():
                if not line:
                    if data:
                        yield kind, orjson.loads("\n".join(data))
                    kind, data = "message", list[str]()  # the event being read: its type and data lines
                elif line.startswith(":"):
                    continue  # a keep-alive comment
                else:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        kind = value
                    elif field == "data":
                        data.append(value)
