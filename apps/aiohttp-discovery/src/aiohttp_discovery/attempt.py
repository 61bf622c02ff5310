"""One attempt: send a request to one address, read the answer within a cap, classify failures.

**Which failures prove that the request never reached the server.** Only two:

- ``aiohttp.ClientConnectorError`` (connection refused, no route, reset during
  the handshake...): raised by the connector while it *creates* a connection,
  before a byte of the request exists on the wire;
- ``aiohttp.ConnectionTimeoutError``: the TCP handshake (``sock_connect``) did
  not complete in time, so there was no connection to write to.

Everything else may have reached the server, and a non-idempotent request
(POST, PATCH) must not be repeated after it: ``ServerDisconnectedError`` or
``ClientOSError`` (reset) after the request was written, typically on a pooled
keep-alive connection the server closed at the same moment, may come after the
server read the request and acted on it; a timeout after the connection was
made (our per-attempt deadline, raised as ``TimeoutError``) says nothing about
whether the server is processing it; a ``ClientPayloadError`` comes after the
status line. A failure is ``reached=False`` only when it is one of the two above.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from aiohttp_discovery.answer import Answer


@dataclass(slots=True)
class Outgoing:
    """A request, prepared once per call and sent as is by every attempt."""

    method: str
    path_qs: str
    """Absolute path and query, already percent-encoded."""
    headers: CIMultiDict[str]
    body: bytes | None


class AttemptFailed(Exception):
    """One attempt failed.

    ``result``: a short word, the metric label. ``reached``: the request may have
    reached the server. ``answered``: the server sent a status line. ``answer``:
    the answer, when the failure is a retryable status.
    """

    def __init__(
        self,
        result: str,
        detail: str,
        *,
        reached: bool = True,
        answered: bool = False,
        answer: Answer | None = None,
    ) -> None:
        super().__init__(detail)
        self.result = result
        self.reached = reached
        self.answered = answered
        self.answer = answer


async def send(
    session: aiohttp.ClientSession,
    request: Outgoing,
    url: URL,
    *,
    address: str,
    seconds: float,
    max_body_bytes: int,
    connect_timeout: float,
) -> Answer:
    """Send ``request`` to ``url`` and read the answer within ``seconds``.

    Returns the answer (``attempts`` 0: the caller sets it) or raises ``AttemptFailed``.
    """
    answered = False
    try:
        async with (
            asyncio.timeout(seconds),
            session.request(
                request.method,
                url,
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
            ) as response,
        ):
            answered = True
            body = await _read(response, max_body_bytes)
            return Answer(
                status=response.status,
                headers=response.headers,
                body=body,
                address=address,
                attempts=0,
                content_type=response.content_type,
                charset=response.charset,
            )
    except AttemptFailed:
        raise
    except aiohttp.ConnectionTimeoutError:
        raise AttemptFailed(
            "connect_timeout", f"connect timed out after {connect_timeout:g}s", reached=False
        ) from None
    except aiohttp.ClientConnectorError as exc:
        raise AttemptFailed(
            "connect_error", f"connect failed: {exc.os_error}", reached=False
        ) from None
    except TimeoutError:
        what = "body" if answered else "response"
        raise AttemptFailed(
            "timeout", f"{what} not received within {seconds:.3f}s", answered=answered
        ) from None
    except aiohttp.ClientError as exc:
        raise AttemptFailed(
            "connection_error", f"{type(exc).__name__}: {exc}", answered=answered
        ) from None


async def _read(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The whole body, uncompressed and at most ``cap`` bytes, or AttemptFailed."""
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    if encoding != "identity":
        # We sent Accept-Encoding: identity; a compressed body could inflate past the cap.
        raise AttemptFailed("bad_body", f"answered Content-Encoding {encoding}", answered=True)
    if response.content_length is not None and response.content_length > cap:
        raise AttemptFailed(
            "bad_body", f"body of {response.content_length} bytes exceeds {cap}", answered=True
        )
    body = bytearray()
    while chunk := await response.content.read(cap + 1 - len(body)):
        body += chunk
        if len(body) > cap:
            raise AttemptFailed("bad_body", f"body exceeds {cap} bytes", answered=True)
    return bytes(body)
