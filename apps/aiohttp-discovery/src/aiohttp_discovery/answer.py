"""What a call returns: ``Answer`` (any HTTP answer, read whole), ``StreamedAnswer`` (its
body read in chunks), or ``UpstreamError`` (no usable answer)."""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

# Content-Type header -> (media type, charset), as aiohttp parses them. An upstream sends
# the same few values on every answer, and the parse costs more than the rest of
# building an answer; past _MEDIA_TYPES_KEPT values the cache starts over.
_media_types: dict[str | None, tuple[str, str | None]] = {}
_MEDIA_TYPES_KEPT = 256


def media_type(response: aiohttp.ClientResponse) -> tuple[str, str | None]:
    """The answer's media type and charset (``response.content_type``, ``.charset``)."""
    raw = response.headers.get("Content-Type")
    known = _media_types.get(raw)
    if known is None:
        if len(_media_types) >= _MEDIA_TYPES_KEPT:
            _media_types.clear()
        known = _media_types[raw] = (response.content_type, response.charset)
    return known


@dataclass(slots=True)
class Answer:
    """An upstream's HTTP answer, read whole (within ``max_body_bytes``, if set). Read-only by
    convention (not frozen: it is built on every call, and frozen dataclasses are slow).

    Any status the caller should see is an answer, 4xx included: the upstream
    said something about the request, and another replica would say the same.
    """

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    address: str
    """The task that answered."""
    attempts: int
    """Attempts started for this call, hedges included."""
    hedged: bool = False
    """True when this answer came from the hedge (the extra attempt)."""
    content_type: str = "application/octet-stream"
    charset: str | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    def text(self, encoding: str | None = None) -> str:
        """The body decoded with ``encoding``, else the answer's charset, else UTF-8.

        Raises ``UnicodeDecodeError`` or ``LookupError`` (unknown charset).
        """
        return self.body.decode(encoding or self.charset or "utf-8")

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8, RFC 8259). Raises ``ValueError``."""
        return jsonlib.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """``get_text()``'s result: the text of a 2xx ``text/*`` answer, who gave it, attempts."""

    text: str
    address: str
    attempts: int


@dataclass
class UpstreamError(Exception):
    """No usable answer. ``status`` is what a proxy should answer its caller.

    503: no task could be reached at all (or none is known); 502: a task
    answered, but unusably (a status in ``retry_statuses`` on the last attempt,
    a body over the cap, a connection cut mid-answer...). ``answer`` holds the
    last answer whose status was retryable, when there was one.
    """

    status: int
    message: str
    attempts: int
    address: str | None = None
    causes: list[str] = field(default_factory=list)
    answer: Answer | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)  # args, as for any exception (logging, pickling)

    def __str__(self) -> str:
        return self.message


class BodyTooLarge(UpstreamError):
    """The answer's body exceeds the caller's ``max_body_bytes``: the caller's limit, so
    the call is not retried elsewhere (another task would send the same body) and no
    task is ejected. ``status`` is 502; ``limit`` is the cap."""

    def __init__(self, limit: int, address: str, detail: str) -> None:
        super().__init__(502, f"answer from {address} {detail}", 0, address, [detail])
        self.limit = limit


#: The most a streamed answer asks aiohttp for in one read (aiohttp's own read buffer).
READ_PIECE = 64 * 1024


class StreamedAnswer:
    """An upstream's HTTP answer whose body is read as it arrives (``UpstreamClient.stream``).

    The status and headers are there at once; ``iter_chunks()`` (or ``async for``) yields
    the body in chunks of at most ``size`` bytes, so memory stays bounded by aiohttp's
    read buffer (``READ_PIECE`` per read) whatever the body's length. Reading is bounded by the
    call's ``request_timeout`` and the caller's ``max_body_bytes``; a body cut short, or
    not read in time, raises ``UpstreamError`` (502), the cap ``BodyTooLarge``. The
    answer is valid inside the ``async with`` block only.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        address: str,
        max_body_bytes: int | None,
        time_left: Callable[[], float],
    ) -> None:
        self._response = response
        self.status = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.address = address
        """The task that answered."""
        self.attempts = 0
        """Attempts started for this call, hedges included."""
        self.hedged = False
        self.content_type, self.charset = media_type(response)
        self._cap = max_body_bytes
        self._time_left = time_left
        self._read = 0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def bytes_read(self) -> int:
        return self._read

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iter_chunks()

    async def iter_chunks(self, size: int = READ_PIECE) -> AsyncIterator[bytes]:
        """The body, in chunks of at most ``size`` bytes, as they arrive.

        Each read asks aiohttp for at most ``READ_PIECE`` bytes, whatever ``size``:
        aiohttp's ``StreamReader.read(n)`` lets its buffer grow to about 2n before it
        stops reading the socket, so a 1 MiB ``size`` would hold about 3 MiB at once.
        Chunks are handed over as they come (at most ``size``, often less)."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"iter_chunks: size must be a positive integer, not {size!r}")
        content = self._response.content
        piece = min(size, READ_PIECE)
        while True:
            try:
                async with asyncio.timeout(max(self._time_left(), 0.0)):
                    chunk = await content.read(piece)
            except TimeoutError:
                raise self._cut("not read within the call's request_timeout") from None
            except aiohttp.ClientError as exc:
                raise self._cut(f"{type(exc).__name__}: {exc}") from None
            if not chunk:
                return
            self._read += len(chunk)
            if self._cap is not None and self._read > self._cap:
                self._response.close()
                raise BodyTooLarge(self._cap, self.address, f"body exceeds {self._cap} bytes")
            yield chunk

    async def read(self) -> bytes:
        """The rest of the body, whole."""
        return b"".join([chunk async for chunk in self.iter_chunks()])

    def _cut(self, why: str) -> UpstreamError:
        self._response.close()
        detail = f"body cut after {self._read} bytes: {why}"
        return UpstreamError(
            502, f"answer from {self.address}: {detail}", self.attempts, self.address, [detail]
        )

    def release(self) -> None:
        """Give the connection back (or close it, if the body was not read to its end)."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


def expect_text(answer: Answer) -> str:
    """The text of a 2xx ``text/*`` answer, or ``UpstreamError`` (502) saying what is wrong."""
    problem = ""
    if not answer.ok:
        problem = f"answered {answer.status}"
    elif answer.content_type.split("/", 1)[0] != "text":
        problem = f"answered {answer.content_type}, not text"
    else:
        try:
            return answer.text()
        except (UnicodeDecodeError, LookupError) as exc:
            problem = f"body is not valid text: {exc}"
    raise UpstreamError(
        502,
        f"unusable answer from {answer.address}: {problem}",
        attempts=answer.attempts,
        address=answer.address,
        causes=[problem],
        answer=answer,
    )
