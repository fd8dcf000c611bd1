"""One delivery attempt over HTTP: a signed POST, bounded in time and in what it reads back.

A receiver is untrusted. An attempt therefore has a connect timeout and one deadline for the whole
exchange (`webhook_timeout_s`: connect, send, status line and body), enforced by asyncio around
httpx, so a receiver trickling one byte at a time cannot hold the attempt longer than that. At most
`webhook_max_response_bytes` of the answer is read, undecoded (no decompression bomb), and only
to keep its start in the delivery record. Redirects are not followed (a 3xx is a failed attempt, as
with Stripe), and proxy variables of the environment are ignored: the notifier connects directly.
Unless private addresses are allowed, the host must resolve to public addresses only, and the
request goes to the address checked (addresses.py). The outcome is a value; an attempt never
raises for anything the receiver does.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from uuid import UUID

import httpx

from services.core.messages import printable
from services.core.settings import Settings
from services.notifier.addresses import first_refused
from services.notifier.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header

USER_AGENT = "CourseCast-Webhooks/1"
# How much of an error (or of a receiver's answer) the delivery record keeps.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt came to: delivered (a 2xx), or the HTTP status and/or the error; `final` when
    trying again cannot help (the endpoint's address is refused)."""

    delivered: bool
    status: int | None
    error: str | None
    final: bool = False


class RefusedAddressError(Exception):
    """The endpoint's host is, or resolves to, an address webhooks may not go to."""


class Sender:
    """The notifier's HTTP client: one connection pool for every endpoint."""

    def __init__(self, settings: Settings) -> None:
        self._deadline_s = settings.webhook_timeout_s
        self._private_allowed = settings.webhook_private_addresses_allowed
        self._max_bytes = settings.webhook_max_response_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.webhook_timeout_s, connect=settings.webhook_connect_timeout_s),
            limits=httpx.Limits(
                max_connections=settings.webhook_concurrency,
                max_keepalive_connections=settings.webhook_concurrency,
            ),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        """Close every connection."""
        await self._client.aclose()

    async def post(self, url: str, event_id: UUID, body: bytes, secrets: list[str]) -> AttemptResult:
        """POST `body` to `url`, signed now with each of `secrets`; never raises for the receiver's doing."""
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: str(event_id),
            SIGNATURE_HEADER: signature_header(secrets, int(time.time()), body),
        }
        try:
            async with asyncio.timeout(self._deadline_s):
                request = await self._request(url, body, headers)
                response = await self._client.send(request, stream=True)
                try:
                    excerpt = await self._read_capped(response)
                finally:
                    await response.aclose()
        except RefusedAddressError as exc:
            return AttemptResult(False, None, _short(str(exc)), final=True)
        except TimeoutError:
            return AttemptResult(False, None, f"no complete answer within {self._deadline_s:g} s")
        except httpx.HTTPError as exc:
            return AttemptResult(False, None, _short(f"{type(exc).__name__}: {exc}"))
        if 200 <= response.status_code < 300:
            return AttemptResult(True, response.status_code, None)
        reason = f"HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")
        return AttemptResult(False, response.status_code, _short(reason))

    async def _request(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Request:
        """The POST to send: as it is when private addresses are allowed; otherwise to the address
        checked here (all of the host's addresses must be public), with the host name kept for the
        Host header and TLS (SNI and certificate), so DNS cannot change the answer in between."""
        target = httpx.URL(url)
        if self._private_allowed:
            return self._client.build_request("POST", target, content=body, headers=headers)
        host = target.host
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = [str(info[4][0]) for info in infos]
        refused = first_refused(addresses)
        if refused is not None or not addresses:
            raise RefusedAddressError(f"{host} resolves to {refused}, which webhooks may not reach")
        pinned = target.copy_with(host=addresses[0])
        headers = {**headers, "Host": target.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        return self._client.build_request(
            "POST", pinned, content=body, headers=headers, extensions=extensions
        )

    async def _read_capped(self, response: httpx.Response) -> str:
        """The start of the answer's body, at most `max_bytes`, raw; the rest is never read."""
        kept = bytearray()
        if self._max_bytes > 0:
            async for chunk in response.aiter_raw():
                kept += chunk[: self._max_bytes - len(kept)]
                if len(kept) >= self._max_bytes:
                    break
        return kept.decode("utf-8", errors="replace").strip()


def _short(text: str) -> str:
    text = printable(text).replace("\n", " ").replace("\r", " ")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
