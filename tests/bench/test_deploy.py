"""The deployment rows' pure parts (bench/deployrows.py) and their options; the rows
themselves run only in ``./dev bench --only-deploy``."""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import parse_args
from bench.deployrows import DeployRow, aims, notes, reference_rate, served_by_revision, table
from bench.zonestats import Call


def calls(count: int, *, start: float = 0.0, seconds: float = 10.0, failed: int = 0) -> list[Call]:
    """``count`` calls spread over ``seconds``, the last ``failed`` of them failed."""
    out = []
    for i in range(count):
        due = start + i * seconds / count
        if i >= count - failed:
            out.append(Call(due, None, failure="HTTP 502"))
        else:
            out.append(Call(due, 5.0, "127.0.2.1", "127.0.1.1"))
    return out


def deployment(id_: int, revision: int, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "revision": revision,
        "state": state,
        "rollback_of": None,
        "started": 4,
        "stopped": 1,
        "failures": 0,
        "threshold": 3,
        "started_at": 100.0,
        "ended_at": 110.0,
    } | extra


def row(kind: str, requests: int = 1000, failed: int = 0, **extra: Any) -> DeployRow:
    return DeployRow(
        label=kind,
        kind=kind,
        calls=calls(requests, failed=failed),
        start=0.0,
        end=10.0,
        **extra,
    )


COMPLETED = {
    "deployments": [deployment(1, 2, "completed")],
    "revision_before": 1,
    "revision_after": 2,
}
ROLLED_BACK = {
    "deployments": [
        deployment(2, 3, "failed", failures=3),
        deployment(3, 2, "completed", rollback_of=2),
    ],
    "revision_before": 2,
    "revision_after": 2,
}


def test_requests_per_second_against_the_references_on_either_side() -> None:
    rows = [
        row("reference", 1000),
        row("deployment", 900, **COMPLETED),
        row("reference", 800),
        row("rollback", 600, **ROLLED_BACK),
        row("reference", 400),
    ]
    assert [reference_rate(rows, i) for i in (1, 3)] == [90.0, 60.0]
    lines = table(rows).splitlines()
    column = lines[0].split("|").index(" vs no deployment ")
    versus = [line.split("|")[column].strip() for line in lines[2:]]
    # Each deployment row against the references on either side: 90/s over (100 + 80) / 2,
    # 60/s over (80 + 40) / 2.
    assert versus == ["-", "1.00x", "-", "1.00x", "-"]


def test_the_worst_second_counts_a_silent_second_as_zero() -> None:
    steady = row("reference", 100)
    assert steady.worst_second() == 10
    gap = [c for c in calls(100) if not 3.0 <= c.due < 4.0]
    assert DeployRow("gap", "reference", gap, 0.0, 10.0).worst_second() == 0


@pytest.mark.parametrize(
    ("kind", "outcome", "passes"),
    [
        ("deployment", COMPLETED, True),
        ("deployment", {**COMPLETED, "revision_after": 1}, False),  # still on the old one
        ("deployment", {**COMPLETED, "deployments": [deployment(1, 2, "failed")]}, False),
        ("rollback", ROLLED_BACK, True),
        ("rollback", {**ROLLED_BACK, "revision_after": 3}, False),  # the broken one serves
        ("rollback", {**ROLLED_BACK, "deployments": ROLLED_BACK["deployments"][:1]}, False),
        (
            "rollback",
            {
                **ROLLED_BACK,
                "deployments": [
                    ROLLED_BACK["deployments"][0],
                    deployment(3, 2, "in progress", rollback_of=2, ended_at=None),
                ],
            },
            False,
        ),
    ],
)
def test_each_deployment_is_judged_on_how_it_ended(
    kind: str, outcome: dict[str, Any], passes: bool
) -> None:
    judged = aims([row("reference"), row(kind, **outcome)])
    assert [a.passed for a in judged] == [True, passes]


def test_one_failed_request_misses_the_aim_and_is_named() -> None:
    judged = aims([row("deployment", failed=1, **COMPLETED)])
    assert not judged[0].passed
    assert judged[0].detail == "1 of 1,000"
    assert "HTTP 502 x1" in notes([row("deployment", failed=1, **COMPLETED)])[0]


def test_answers_are_counted_by_the_revision_of_the_replica_alive_at_that_moment() -> None:
    """An address freed by an old replica can be taken by a new one."""
    replicas = [
        {"address": "127.0.1.1", "revision": 1, "started_at": 0.0, "exited_at": 5.0},
        {"address": "127.0.1.1", "revision": 2, "started_at": 6.0, "exited_at": None},
    ]
    answered = [
        Call(1.0, 1.0, "127.0.2.1", "127.0.1.1"),
        Call(7.0, 1.0, "127.0.2.1", "127.0.1.1"),
        Call(8.0, 1.0, "127.0.2.1", "127.0.1.1"),
        Call(9.0, None, failure="timeout"),
    ]
    assert served_by_revision(answered, replicas) == {1: 1, 2: 2}


def test_only_deploy_needs_no_other_row() -> None:
    args = parse_args(["--only-deploy", "--deploy-seconds", "15"])
    assert (args.only_deploy, args.deploy_seconds, args.deploy_connections) == (True, 15.0, 16)
    for argv in (
        ["--only-deploy", "--no-deploy"],
        ["--only-deploy", "--only-zones"],
        ["--only-deploy", "--deploy-seconds", "10"],  # shorter than a deployment's drain
        ["--only-deploy", "--deploy-connections", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(argv)
