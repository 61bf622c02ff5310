"""One attempt: send a request to one address, take its answer, and classify any failure.

Every failure of an attempt is classified here and nowhere else, into a ``Failure``:

| failure | ``result`` | reached? |
| --- | --- | --- |
| ``ClientConnectorError``: refused, unreachable, handshake failed | ``connect_error`` | no |
| ``ConnectionTimeoutError``: no handshake in ``connect_timeout`` | ``connect_timeout`` | no |
| no answer (or, read whole, no whole body) within the attempt's time | ``timeout`` | maybe |
| the connection cut after the request was written, or mid-body | ``connection_error`` | maybe |
| a status in ``retry_statuses`` | ``status_5xx``, ``status_retry`` | yes |
| anything else raised from inside (a bug, an unexpected library error) | ``error`` | maybe |

**Which failures prove that the request never reached the server.** Only the first two:
``ClientConnectorError`` is raised while the connector *creates* a connection, and
``ConnectionTimeoutError`` when the handshake itself timed out; in both cases not a
byte of the request exists on the wire. Everything else may come after the server read
the request and acted on it (a pooled keep-alive connection the server closed at the
moment it was reused looks exactly like a server that crashed mid-request), so a POST
is not repeated after it.

A body over the caller's ``max_body_bytes`` is not a failure of the attempt: the task
answered correctly and the limit is the caller's. It raises ``BodyTooLarge`` (an
``UpstreamError``), which ends the call.
"""

from __future__ import annotations

import asyncio
import math
import ssl as ssllib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import NoReturn

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from aiohttp_discovery.answer import Answer, BodyTooLarge, StreamedAnswer, media_type

# What is read of an answer whose status is retried (for UpstreamError.answer): enough for
# an error document, never a whole download.
ERROR_BODY_LIMIT = 64 * 1024


@dataclass(slots=True)
class Outgoing:
    """A request, prepared once per call and sent as is by every attempt."""

    method: str
    path_qs: str
    """Absolute path and query, already percent-encoded."""
    headers: CIMultiDict[str] | None
    """The call's own headers (the session sends Host and ``settings.headers``)."""
    body: bytes | None


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one attempt failed. ``result``: a short word, the metric label. ``reached``:
    the request may have reached the server. ``answered``: the server sent a status
    line. ``answer``: the answer, when the failure is a retried status."""

    result: str
    detail: str
    reached: bool = True
    answered: bool = False
    answer: Answer | None = None

    def __str__(self) -> str:
        return self.detail


class AttemptFailed(Exception):
    """One attempt failed; ``failure`` says how."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how an attempt sends: the same for every attempt of a client."""

    session: aiohttp.ClientSession
    connect_timeout: float
    retry_statuses: Collection[int]
    max_body_bytes: int | None
    server_hostname: str | None
    """TLS: the name the certificate must carry (the upstream's, not the task's IP)."""
    ssl: ssllib.SSLContext | bool
    deadlines: dict[int, aiohttp.ClientTimeout] = field(default_factory=dict)
    """``deadline``'s timeouts by whole milliseconds (0: none)."""

    def deadline(self, seconds: float | None) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for one whole exchange of ``seconds`` (None: no bound but
        the handshake's), the handshake within ``connect_timeout``.

        Whole milliseconds, at least one (aiohttp reads a total of 0 as no bound at all),
        never rounded up to a whole second (aiohttp's ``ceil_threshold`` would do that
        from 5 s); each value is built once (most calls ask for the same few).
        """
        ms = 0 if seconds is None else max(1, int(seconds * 1000))
        timeout = self.deadlines.get(ms)
        if timeout is None:
            if len(self.deadlines) >= _DEADLINES_KEPT:
                self.deadlines.clear()
            timeout = self.deadlines[ms] = aiohttp.ClientTimeout(
                total=ms / 1000 if ms else None,
                sock_connect=self.connect_timeout,
                ceil_threshold=math.inf,
            )
        return timeout


_DEADLINES_KEPT = 4096


def classify(
    exc: BaseException, *, answered: bool, seconds: float, connect_timeout: float
) -> Failure:
    """The one place where an exception from an attempt becomes a ``Failure``."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Failure(
            "connect_timeout", f"connect timed out after {connect_timeout:g}s", reached=False
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Failure("connect_error", f"connect failed: {exc.os_error}", reached=False)
    if isinstance(exc, TimeoutError):
        what = "body" if answered else "answer"
        return Failure("timeout", f"no whole {what} within {seconds:.3f}s", answered=answered)
    if isinstance(exc, aiohttp.ClientError):
        return Failure("connection_error", f"{type(exc).__name__}: {exc}", answered=answered)
    return Failure("error", f"unexpected {type(exc).__name__}: {exc}", answered=answered)


def retried_status(answer: Answer) -> Failure:
    result = "status_5xx" if answer.status >= 500 else "status_retry"
    return Failure(result, f"answered {answer.status}", answered=True, answer=answer)


async def send(
    target: Target,
    request: Outgoing,
    url: URL,
    *,
    address: str,
    seconds: float,
    stream: bool,
    time_left: Callable[[], float],
) -> Answer | StreamedAnswer:
    """Send ``request`` to ``url`` and take the answer within ``seconds``: read whole, or,
    with ``stream``, up to its headers (the body is then the caller's to read).

    Returns the answer (``attempts`` 0: the caller sets it); raises ``AttemptFailed``, or
    ``BodyTooLarge`` when a whole read exceeds the caller's cap.
    """
    response: aiohttp.ClientResponse | None = None
    try:
        if stream:
            # The attempt's bound ends at the headers; the caller's reads have the call's.
            async with asyncio.timeout(seconds):
                response = await _open(target, request, url, target.deadline(None))
                if response.status in target.retry_statuses:
                    await _refuse(target, response, address)
                streamed = StreamedAnswer(
                    response,
                    address=address,
                    max_body_bytes=target.max_body_bytes,
                    time_left=time_left,
                )
                response = None  # handed over: the caller releases it
                return streamed
        # Read whole: aiohttp's own deadline bounds the exchange, body included (one
        # timer, as a plain session has, where asyncio.timeout would add a second).
        response = await _open(target, request, url, target.deadline(seconds))
        if response.status in target.retry_statuses:
            await _refuse(target, response, address)
        body = await _read(response, target.max_body_bytes, address)
        return _answer(response, body, address)
    except (AttemptFailed, BodyTooLarge):
        raise
    except Exception as exc:  # every other failure, classified in one place
        failure = classify(
            exc,
            answered=response is not None,
            seconds=seconds,
            connect_timeout=target.connect_timeout,
        )
        raise AttemptFailed(failure) from None
    finally:
        if response is not None:
            response.release()


def _open(
    target: Target, request: Outgoing, url: URL, timeout: aiohttp.ClientTimeout
) -> Awaitable[aiohttp.ClientResponse]:
    """The request, sent; its answer up to the headers."""
    return target.session.request(
        request.method,
        url,
        headers=request.headers,
        data=request.body,
        allow_redirects=False,
        server_hostname=target.server_hostname,
        ssl=target.ssl,
        timeout=timeout,
    )


async def _refuse(target: Target, response: aiohttp.ClientResponse, address: str) -> NoReturn:
    """A status the caller retries: the attempt failed, with (the start of) its answer."""
    cap = ERROR_BODY_LIMIT
    if target.max_body_bytes is not None:
        cap = min(cap, target.max_body_bytes)
    body = await _read(response, cap, address, truncate=True)
    raise AttemptFailed(retried_status(_answer(response, body, address)))


def _answer(response: aiohttp.ClientResponse, body: bytes, address: str) -> Answer:
    content_type, charset = media_type(response)
    return Answer(
        status=response.status,
        headers=response.headers,
        body=body,
        address=address,
        attempts=0,
        content_type=content_type,
        charset=charset,
    )


async def _read(
    response: aiohttp.ClientResponse, cap: int | None, address: str, *, truncate: bool = False
) -> bytes:
    """The whole (decoded) body; over ``cap``: ``BodyTooLarge``, or its first ``cap``
    bytes with ``truncate`` (the connection is then closed, not reused)."""
    if cap is None:
        return await response.read()
    # Content-Length is the encoded size; a plain body that says it is too large is.
    announced = response.content_length
    plain = "Content-Encoding" not in response.headers
    if not truncate and plain and announced is not None and announced > cap:
        response.close()
        raise BodyTooLarge(cap, address, f"announces {announced} bytes, over {cap}")
    body = bytearray()
    while chunk := await response.content.read(cap + 1 - len(body)):
        body += chunk
        if len(body) > cap:
            response.close()
            if truncate:
                return bytes(body[:cap])
            raise BodyTooLarge(cap, address, f"body exceeds {cap} bytes")
    return bytes(body)
