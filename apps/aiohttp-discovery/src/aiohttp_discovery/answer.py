"""What a call returns: ``Answer`` (any HTTP answer) or ``UpstreamError`` (no usable answer)."""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDictProxy


@dataclass(slots=True)
class Answer:
    """An upstream's HTTP answer, read whole (at most ``max_body_bytes``). Read-only by
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
