"""The deployment rows' figures, table and aims: pure functions of the calls a row recorded
and of the deployments the stack reported (bench/deploy.py drives the stack).

Each row is a window of closed-loop load through the local stack's front: a reference with
no deployment, a deployment of name that completes, and one of a revision that never becomes
healthy, rolled back by the circuit breaker. Judged: failed requests (none allowed) and how
each deployment ended; requests/s against the reference is informational.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import Aim, markdown_table
from bench.zonestats import Call, ms, percentile

BUCKET_SECONDS = 1.0  # the worst-second column: answers per 1 s of the window


@dataclass(frozen=True)
class DeployRow:
    label: str
    kind: str  # "reference", "deployment" or "rollback"
    calls: Sequence[Call]  # every call sent in [start, end)
    start: float
    end: float
    # The service's deployments from the one this row started (the rollback after it),
    # as ``local.control status`` reports them; none for the reference.
    deployments: Sequence[Mapping[str, Any]] = ()
    revision_before: int | None = None
    revision_after: int | None = None
    served_by_revision: Mapping[int, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def requests(self) -> int:
        return len(self.calls)

    @property
    def failed(self) -> int:
        return sum(not c.ok for c in self.calls)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def worst_second(self) -> int:
        """The fewest answers in any whole second of the window (by when they arrived)."""
        buckets = int(self.seconds // BUCKET_SECONDS)
        if buckets < 1:
            return 0
        counts = Counter(
            int((c.answered_at - self.start) // BUCKET_SECONDS)
            for c in self.calls
            if c.answered_at is not None
        )
        return min(counts.get(i, 0) for i in range(buckets))

    def outcome(self) -> str:
        """How the row's deployment(s) ended, from the stack's own record."""
        if not self.deployments:
            return "no deployment"
        parts = []
        for d in self.deployments:
            took = "still in progress"
            if d.get("ended_at") is not None:
                took = f"{d['state']} after {d['ended_at'] - d['started_at']:.1f} s"
            what = (
                f"rollback to revision {d['revision']}"
                if d.get("rollback_of") is not None
                else f"deployment of revision {d['revision']}"
            )
            parts.append(
                f"{what} {took} ({d['started']} started, {d['stopped']} stopped,"
                f" circuit breaker {d['failures']} of {d['threshold']})"
            )
        return "; ".join(parts)

    def completed(self) -> bool:
        """The deployment completed on its new revision."""
        return (
            len(self.deployments) == 1
            and self.deployments[0]["state"] == "completed"
            and self.revision_after == self.deployments[0]["revision"]
        )

    def rolled_back(self) -> bool:
        """The circuit breaker failed the deployment, and the rollback to the revision
        that served before completed."""
        if len(self.deployments) != 2:
            return False
        failed, rollback = self.deployments
        return bool(
            failed["state"] == "failed"
            and rollback["state"] == "completed"
            and rollback["rollback_of"] == failed["id"]
            and rollback["revision"] == self.revision_before == self.revision_after
        )


HEADERS = (
    "row",
    "seconds",
    "requests",
    "req/s",
    "vs no deployment",
    "worst 1 s",
    "failed",
    "p50 ms",
    "p99 ms",
)


def reference_rate(rows: Sequence[DeployRow], index: int) -> float | None:
    """Requests/s with no deployment around row ``index``: the mean of the nearest
    reference row before it and the nearest after it (the rows alternate, so that a
    machine whose speed drifts during the run weighs on both sides alike)."""
    before = [r for r in rows[:index] if r.kind == "reference"][-1:]
    after = [r for r in rows[index + 1 :] if r.kind == "reference"][:1]
    rates = [r.per_second for r in before + after]
    return sum(rates) / len(rates) if rates else None


def ratio(rows: Sequence[DeployRow], index: int) -> float | None:
    """Row ``index``'s requests/s over its neighbouring references' (None for a reference)."""
    reference = reference_rate(rows, index)
    if rows[index].kind == "reference" or not reference:
        return None
    return rows[index].per_second / reference


def table(rows: Sequence[DeployRow]) -> str:
    cells = [list(HEADERS)]
    for index, row in enumerate(rows):
        versus = ratio(rows, index)
        cells.append(
            [
                row.label,
                f"{row.seconds:.1f}",
                f"{row.requests:,}",
                f"{row.per_second:,.0f}",
                "-" if versus is None else f"{versus:.2f}x",
                f"{row.worst_second():,}",
                f"{row.failed:,}",
                ms(percentile(row.calls, 50)),
                ms(percentile(row.calls, 99)),
            ]
        )
    return markdown_table(cells)


def notes(rows: Sequence[DeployRow]) -> list[str]:
    lines = []
    for row in rows:
        parts = [row.outcome()]
        if row.served_by_revision:
            served = ", ".join(
                f"{n:,} by revision {rev}" for rev, n in sorted(row.served_by_revision.items())
            )
            parts.append(f"name's answers: {served}")
        failures = Counter(c.failure for c in row.calls if not c.ok)
        if failures:
            parts.append("failures " + ", ".join(f"{k} x{n}" for k, n in failures.most_common()))
        lines.append(f"  {row.label}: {'; '.join(parts)}")
    return lines


def aims(rows: Sequence[DeployRow]) -> list[Aim]:
    out = []
    for row in rows:
        if row.kind == "reference":
            continue
        out.append(
            Aim(
                f"{row.label}: zero failed requests",
                row.failed == 0,
                f"{row.failed:,} of {row.requests:,}",
            )
        )
        if row.kind == "deployment":
            out.append(
                Aim(f"{row.label}: completed on the new revision", row.completed(), row.outcome())
            )
        elif row.kind == "rollback":
            out.append(
                Aim(
                    f"{row.label}: circuit breaker, then the old revision serves",
                    row.rolled_back(),
                    row.outcome(),
                )
            )
    return out


def served_by_revision(
    calls: Sequence[Call], replicas: Sequence[Mapping[str, Any]]
) -> dict[int, int]:
    """Answers per revision of the name replica that gave them: each replica (running or
    finished, from ``local.control status``) by its address while it lived, since an address
    freed by an old replica can be taken by a new one."""
    counts: Counter[int] = Counter()
    for call in calls:
        if call.name is None or call.answered_at is None:
            continue
        at = call.answered_at
        revision = next(
            (
                r["revision"]
                for r in replicas
                if r["address"] == call.name
                and r["started_at"] <= at <= (r["exited_at"] or math.inf)
            ),
            None,
        )
        if revision is not None:
            counts[revision] += 1
    return dict(counts)


def write_json(rows: Sequence[DeployRow], path: Path) -> None:
    out = [
        {
            "label": row.label,
            "kind": row.kind,
            "seconds": round(row.seconds, 3),
            "requests": row.requests,
            "failed": row.failed,
            "per_second": round(row.per_second, 1),
            "vs_reference": None if (v := ratio(rows, index)) is None else round(v, 3),
            "worst_second": row.worst_second(),
            "p50_ms": _finite(percentile(row.calls, 50)),
            "p99_ms": _finite(percentile(row.calls, 99)),
            "deployments": list(row.deployments),
            "served_by_revision": {str(k): v for k, v in row.served_by_revision.items()},
        }
        for index, row in enumerate(rows)
    ]
    path.write_text(json.dumps(out, indent=2) + "\n")


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)
