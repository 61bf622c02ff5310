"""The end-to-end test's own logic, without AWS: fakes stand in for the stack, the URL and time.

The real run (test_e2e.py) costs half an hour and an AWS bill, so its checks must be right
before it runs: an answer check that accepts a wrong body, a task count that counts answers,
a "no changes" check that lets an update through, or a cleanup that skips `destroy` after a
failure would each pass silently on AWS or leave a billed stack behind.
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from pulumi import automation as auto
from pulumi.automation import OpType

import stack as stack_settings
from deploy.github_oidc.names import DEFAULT_STACKS
from tests.e2e import interrupt, lifecycle, rollback
from tests.e2e.lifecycle import (
    Budget,
    CleanupFailed,
    NotSettled,
    Preview,
    Reply,
    UnexpectedChanges,
    Update,
    WrongAnswer,
)
from tests.e2e.rollback import RollbackHidden, RollbackReportedAsSuccess, Step

# The seed's README shows this answer (us-east-2 hostnames of two Fargate tasks).
SEED_ANSWER = (
    "Hello (from ip-10-0-138-3.us-east-2.compute.internal) "
    "Sophia (from ip-10-0-191-125.us-east-2.compute.internal)"
)
URL = "http://entry-1234567890.us-east-1.elb.amazonaws.com/"
NO_OUTPUT: Callable[[str], None] = lambda _: None  # noqa: E731
NAME_SERVICE_URN = (
    "urn:pulumi:e2e::fargate-service-discovery::"
    "fargate-service-discovery:service:DiscoverableService$aws:ecs/service:Service"
)


class Clock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def name_host(i: int) -> str:
    return f"ip-10-0-{i}-9.ec2.internal"


class FakeStack:
    """An E2EStack in memory: a cluster whose name tasks follow name.desiredCount.

    fail_at: the operation that raises; destroy_failures: how many destroys raise first;
    preview_summary: what the second preview reports; stale: hello never sees new tasks;
    reachable: how many name tasks hello reaches at most (1: stuck on the first record);
    rollback: what `up` of the unhealthy name revision does ("fails": the provider's error,
    "succeeds": an old provider's false success, "build": fails for another reason);
    hidden: after the rollback, the refreshed preview plans no taskDefinition update;
    pending: the checkpoint's pending operations.
    """

    def __init__(
        self,
        *,
        fail_at: str | None = None,
        destroy_failures: int = 0,
        preview_summary: dict[Any, int] | None = None,
        scale_summary: dict[Any, int] | None = None,
        stale: bool = False,
        reachable: int | None = None,
        initial: int = 2,
        rollback: str = "fails",
        hidden: bool = False,
        pending: list[lifecycle.PendingOperation] | None = None,
    ) -> None:
        self.calls: list[str] = []
        self.rollback = rollback
        self.hidden = hidden
        self.pending = pending or []
        self.unhealthy = False
        self.rolled_back = False
        self.fail_at = fail_at
        self.destroy_failures = destroy_failures
        self.preview_summary = preview_summary or {"same": 40}
        self.scale_summary = scale_summary or {"same": 39, "update": 1}
        self.stale = stale
        self.reachable = reachable
        self.desired = initial
        self.running = 0
        self.ups = 0
        self._turn = itertools.count()

    @property
    def name(self) -> str:
        return "e2e-fake"

    def _call(self, op: str) -> None:
        self.calls.append(op)
        if op == self.fail_at:
            raise RuntimeError(f"{op} failed on purpose")

    def up(self) -> Update:
        self._call("up")
        if self.unhealthy:
            return self._up_unhealthy()
        self.ups += 1
        if not self.stale or self.running == 0:
            self.running = self.desired
        return Update({"url": URL}, {"create": 60} if self.ups == 1 else self.scale_summary)

    def _up_unhealthy(self) -> Update:
        if self.rollback == "build":
            raise RuntimeError("error: docker build failed")
        self.rolled_back = True
        if self.rollback == "succeeds":
            return Update({"url": URL}, {"same": 39, "update": 1})
        raise RuntimeError(
            "error: waiting for ECS Service (arn:aws:ecs:us-east-1:123456789012:service/"
            "fargate-service-discovery-e2e/name-abc1234) update: ECS Deployment Circuit "
            "Breaker was triggered"
        )

    def preview(self, refresh: bool = False) -> Preview:
        self._call("preview --refresh" if refresh else "preview")
        if not self.rolled_back:
            return Preview(self.preview_summary, "diff text of the preview")
        urn = f"{NAME_SERVICE_URN}::name"
        step = Step(urn, "aws:ecs/service:Service", "update", ("taskDefinition",))
        # What the engine plans for a resource saved with init errors when nothing is read
        # back: an update with no changed keys (rollback.py).
        steps = (Step(urn, step.type, "update", ()),) if self.hidden or not refresh else (step,)
        return Preview({"same": 39, "update": 1}, "~ name", steps)

    def use_unhealthy_name(self, unhealthy: bool) -> None:
        self._call(f"use_unhealthy_name {unhealthy}")
        self.unhealthy = unhealthy

    def pending_operations(self) -> list[lifecycle.PendingOperation]:
        self._call("pending_operations")
        return self.pending

    def cancel(self) -> None:
        self._call("cancel")

    def set_config(self, key: str, value: str) -> None:
        self._call(f"set_config {key}={value}")
        if key == lifecycle.DESIRED_COUNT_KEY:
            self.desired = int(value)

    def destroy(self) -> None:
        self._call("destroy")
        if self.destroy_failures:
            self.destroy_failures -= 1
            raise RuntimeError("DependencyViolation: a network interface is still in use")

    def remove(self) -> None:
        self._call("remove")

    def fetch(self, url: str) -> Reply:
        """hello's answer, alternating over the running name tasks (round robin)."""
        assert url == URL
        turn = next(self._turn)
        assert turn < MAX_REQUESTS, "unbounded: the wait never gave up"
        task = name_host(turn % min(self.running, self.reachable or self.running))
        return Reply(200, f"Hello (from ip-10-0-200-{turn % 2}.ec2.internal) Ava (from {task})")


def scenario(
    stack: FakeStack,
    clock: Clock | None = None,
    budget: Budget | None = None,
    run: Callable[..., None] = lifecycle.run_scenario,
) -> None:
    """The real test's body (test_e2e.py), with the fakes."""
    clock = clock or Clock()
    with lifecycle.cleaned_up(stack, log=NO_OUTPUT, clock=clock, sleep=clock.sleep):
        run(
            stack,
            initial=2,
            fetch=stack.fetch,
            budget=budget or Budget(),
            log=NO_OUTPUT,
            sample=functools.partial(lifecycle.sample_until, clock=clock, sleep=clock.sleep),
            clock=clock,
            sleep=clock.sleep,
        )


# --- the answer -------------------------------------------------------------------------------


def test_the_seed_answer_parses_into_both_tasks() -> None:
    answer = lifecycle.parse_answer(SEED_ANSWER)
    assert answer.hello_host == "ip-10-0-138-3.us-east-2.compute.internal"
    assert answer.name == "Sophia"
    assert answer.name_host == "ip-10-0-191-125.us-east-2.compute.internal"


@pytest.mark.parametrize(
    "body",
    [
        "service unavailable: no name service task could be reached\n",  # hello's 503 body
        "Sophia (from ip-10-0-191-125.ec2.internal)",  # name's answer, not hello's
        "Hello (from ip-10-0-138-3.ec2.internal) ",  # no name answer at all
        SEED_ANSWER + "\n",  # anything after the seed's answer
        "<html><body>502 Bad Gateway</body></html>",  # the load balancer's own page
        "Hello (from ip-10-0-138-3.ec2.internal) Sophia Lee (from ip-10-0-191-125.ec2.internal)",
    ],
)
def test_anything_but_the_seed_wire_format_is_a_wrong_answer(body: str) -> None:
    with pytest.raises(WrongAnswer):
        lifecycle.parse_answer(body)


# --- counting distinct tasks --------------------------------------------------------------------


# More requests than any bounded wait here makes: beyond it, the wait is unbounded.
MAX_REQUESTS = 5000


def replies(*items: Reply) -> Callable[[], Reply]:
    """These replies in order, then the last one again, up to MAX_REQUESTS in all."""
    it = itertools.chain(items, itertools.repeat(items[-1], MAX_REQUESTS))

    def fetch() -> Reply:
        reply = next(it, None)
        assert reply is not None, "unbounded: the wait never gave up"
        return reply

    return fetch


def ok(task: int, hello: int = 0) -> Reply:
    return Reply(200, f"Hello (from hello-{hello}) Ava (from {name_host(task)})")


def test_answers_from_one_task_count_once_however_many_they_are() -> None:
    """Ten answers from one task are one task: counting answers would pass a stack where
    hello reaches a single name task (discovery broken, the first record used forever)."""
    clock = Clock()
    fetch = replies(*[ok(0)] * 10, ok(1))
    sample = lifecycle.sample_until(fetch, 2, 60, clock=clock, sleep=clock.sleep)
    assert sample.name_tasks == {name_host(0), name_host(1)}
    assert sample.answers == 11


def test_the_count_is_of_name_tasks_not_of_hello_tasks() -> None:
    clock = Clock()
    fetch = replies(ok(0, hello=0), ok(0, hello=1), ok(0, hello=2))
    with pytest.raises(NotSettled, match="1 distinct name task"):
        lifecycle.sample_until(fetch, 2, 60, clock=clock, sleep=clock.sleep)


def test_errors_while_the_stack_settles_are_waited_out() -> None:
    clock = Clock()
    fetch = replies(
        Reply(0, "URLError: Name or service not known"),  # the ALB's name not in DNS yet
        Reply(503, "<html>503 Service Temporarily Unavailable</html>"),
        ok(0),
        Reply(502, "bad gateway: the name service gave no usable answer"),
        ok(1),
    )
    sample = lifecycle.sample_until(fetch, 2, 60, clock=clock, sleep=clock.sleep)
    assert len(sample.name_tasks) == 2
    assert sample.failures == 3


def test_waiting_is_bounded_and_the_failure_says_what_was_seen() -> None:
    clock = Clock()
    calls = 0

    def fetch() -> Reply:
        nonlocal calls
        calls += 1
        assert calls < MAX_REQUESTS, "unbounded: the wait never gave up"
        return Reply(503, "<html>503</html>") if calls % 2 else ok(0)

    with pytest.raises(NotSettled) as failure:
        lifecycle.sample_until(fetch, 2, 120, clock=clock, sleep=clock.sleep)
    assert 1120 <= clock.now <= 1125  # stopped at the deadline, one pause at most after it
    assert calls < 150  # paced, not a busy loop
    message = str(failure.value)
    assert "wanted 2" in message
    assert "1 distinct name task(s)" in message
    assert "503" in message


def test_a_wrong_answer_fails_at_once_instead_of_being_waited_out() -> None:
    clock = Clock()
    fetch = replies(Reply(200, "<html>It works!</html>"), ok(0), ok(1))
    with pytest.raises(WrongAnswer):
        lifecycle.sample_until(fetch, 2, 600, clock=clock, sleep=clock.sleep)
    assert clock.now == 1000.0


# --- what a preview and the scale-out may change ---------------------------------------------


@pytest.mark.parametrize(
    "summary",
    [
        {"same": 41},
        {"same": 41, "update": 0, "replace": 0},
        {OpType.SAME: 41},
    ],
)
def test_a_preview_of_only_same_is_no_change(summary: dict[Any, int]) -> None:
    lifecycle.require_no_changes(summary)


@pytest.mark.parametrize(
    "summary",
    [
        {"same": 40, "update": 1},  # e.g. a task definition that differs on every run
        {"same": 39, "replace": 1},  # item 1 of issue 8: the Cloud Map service's health block
        {"same": 40, "create-replacement": 1, "delete-replaced": 1},
        {"same": 40, "create": 1},
        {"same": 40, "delete": 1},
        {OpType.SAME: 40, OpType.UPDATE: 1},
        {},  # a preview that compared nothing proves nothing
        {"same": 0},
    ],
)
def test_a_preview_with_any_change_is_a_perpetual_diff(summary: dict[Any, int]) -> None:
    with pytest.raises(UnexpectedChanges, match="perpetual diff") as failure:
        lifecycle.require_no_changes(summary, diff="~ aws:ecs/service:Service name update")
    assert "aws:ecs/service:Service name update" in str(failure.value)


def test_scaling_name_updates_in_place() -> None:
    lifecycle.require_in_place_update({"same": 40, "update": 1})
    for summary in ({"same": 40, "replace": 1, "update": 1}, {"same": 41}, {"delete": 1}):
        with pytest.raises(UnexpectedChanges):
            lifecycle.require_in_place_update(summary)


# --- the scenario and its cleanup --------------------------------------------------------------


def test_the_scenario_runs_in_order_and_ends_destroyed_and_removed() -> None:
    stack = FakeStack()
    scenario(stack)
    assert stack.calls == [
        "up",
        # Refreshed: drift only a read of the real resources shows is a perpetual diff too.
        "preview --refresh",
        f"set_config {lifecycle.MIN_COUNT_KEY}=3",
        f"set_config {lifecycle.DESIRED_COUNT_KEY}=3",
        "up",
        # The other discovery mode: switched in one up, every task answers, no perpetual diff.
        f"set_config {lifecycle.DISCOVERY_MODE_KEY}=serviceConnect",
        "up",
        "preview --refresh",
        # The rollback check: an unhealthy name revision, up fails, a refreshed preview.
        "use_unhealthy_name True",
        "up",
        "preview --refresh",
        "use_unhealthy_name False",
        # Read before destroy: a successful destroy drops them from the state.
        "pending_operations",
        "destroy",
        "remove",
    ]


class DriftsInServiceConnect(FakeStack):
    """A stack whose Service Connect blocks read back differently from what was sent."""

    def preview(self, refresh: bool = False) -> Preview:
        if f"set_config {lifecycle.DISCOVERY_MODE_KEY}=serviceConnect" in self.calls:
            self._call("preview --refresh" if refresh else "preview")
            return Preview({"same": 39, "update": 1}, "~ name serviceConnectConfiguration")
        return super().preview(refresh)


def test_a_perpetual_diff_in_service_connect_mode_fails_and_the_stack_is_destroyed() -> None:
    stack = DriftsInServiceConnect()
    with pytest.raises(UnexpectedChanges):
        scenario(stack)
    assert "use_unhealthy_name True" not in stack.calls  # stopped at the switch's preview
    assert stack.calls[-2:] == ["destroy", "remove"]


def test_hello_not_answering_through_service_connect_fails_within_the_scale_budget() -> None:
    """After the switch every name task must answer again, through the proxies."""

    class OneTaskThroughTheProxy(FakeStack):
        def set_config(self, key: str, value: str) -> None:
            super().set_config(key, value)
            if key == lifecycle.DISCOVERY_MODE_KEY:
                self.reachable = 1

    stack = OneTaskThroughTheProxy()
    clock = Clock()
    with pytest.raises(AssertionError):
        scenario(stack, clock, Budget(scale=30))
    assert stack.calls[-2:] == ["destroy", "remove"]


def test_hello_reaching_one_name_task_only_fails_within_the_settle_budget() -> None:
    """One name task behind hello is the broken-discovery case (the seed's Node client sends
    everything to the first record): at least two distinct tasks must answer."""
    stack = FakeStack(reachable=1)
    clock = Clock()
    with pytest.raises(NotSettled, match="wanted 2 distinct name tasks within 120 s"):
        scenario(stack, clock, Budget(settle=120, scale=90))
    assert 120 <= clock.now - 1000 <= 123
    assert stack.calls == ["up", "pending_operations", "destroy", "remove"]


def test_hello_not_reaching_the_new_task_fails_within_the_scale_budget() -> None:
    stack = FakeStack(stale=True)
    clock = Clock()
    with pytest.raises(NotSettled, match="wanted 3"):
        scenario(stack, clock, Budget(settle=600, scale=90))
    # Two tasks answered at once; then the scale-out waited its budget (one pause over at most).
    assert 90 <= clock.now - 1000 <= 93
    assert stack.calls[-2:] == ["destroy", "remove"]


def test_a_perpetual_diff_fails_the_scenario_and_the_stack_is_still_destroyed() -> None:
    stack = FakeStack(preview_summary={"same": 39, "replace": 1})
    with pytest.raises(UnexpectedChanges):
        scenario(stack)
    assert stack.calls == ["up", "preview --refresh", "pending_operations", "destroy", "remove"]


def test_a_scale_out_that_replaces_resources_fails() -> None:
    stack = FakeStack(scale_summary={"same": 38, "replace": 1, "update": 1})
    with pytest.raises(UnexpectedChanges, match="in place"):
        scenario(stack)
    assert stack.calls[-2:] == ["destroy", "remove"]


@pytest.mark.parametrize(
    "op", ["up", "preview --refresh", f"set_config {lifecycle.DESIRED_COUNT_KEY}=3"]
)
def test_a_failure_anywhere_still_destroys_then_removes_the_stack(op: str) -> None:
    stack = FakeStack(fail_at=op)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        scenario(stack)
    assert stack.calls[-4:] == [op, "pending_operations", "destroy", "remove"]


def test_a_destroy_that_fails_is_retried_after_minutes_not_at_once() -> None:
    """AWS releases a stopped task's network interface minutes after the task stops, and its
    security group cannot be deleted until then: a retry at once fails the same way."""
    stack = FakeStack(destroy_failures=2)
    clock = Clock()
    with lifecycle.cleaned_up(stack, log=NO_OUTPUT, clock=clock, sleep=clock.sleep):
        pass
    assert stack.calls == ["pending_operations", "destroy", "destroy", "destroy", "remove"]
    # Waited 60 s, then 120 s: DESTROY_RETRY_WAITS, each longer than the last.
    assert clock.now - 1000 == sum(lifecycle.DESTROY_RETRY_WAITS[:2])
    assert list(lifecycle.DESTROY_RETRY_WAITS) == sorted(lifecycle.DESTROY_RETRY_WAITS)
    assert lifecycle.DESTROY_RETRY_WAITS[0] >= 60


def test_destroy_retries_stop_where_the_cleanup_budget_ends() -> None:
    """A cancelled GitHub run gets about 5 minutes: no retry starts that cannot finish in the
    cleanup's budget; the stack is kept for the next run's leftover job."""
    stack = FakeStack(destroy_failures=4)
    clock = Clock()
    problem = lifecycle.clean_up(stack, NO_OUTPUT, seconds=150, clock=clock, sleep=clock.sleep)
    assert problem is not None
    assert "stack is kept" in problem
    assert "attempt 2" in problem  # after 60 s; the 120 s wait would end past 150 s
    assert stack.calls == ["pending_operations", "destroy", "destroy"]
    assert clock.now - 1000 == 60


def test_pending_creates_are_read_before_destroy_and_keep_the_stack() -> None:
    """A create interrupted mid-way may have made a resource the state does not hold; destroy
    and `stack rm` would both forget it, so the stack is kept and the resource named."""
    pending = lifecycle.PendingOperation(
        "creating", "aws:ec2/natGateway:NatGateway", "urn:pulumi:e2e::p::aws:ec2/natGateway::nat"
    )
    stack = FakeStack(pending=[pending])
    with pytest.raises(CleanupFailed, match="pending operation") as failed:
        scenario(stack)
    assert "aws:ec2/natGateway:NatGateway" in str(failed.value)
    assert stack.calls[-2:] == ["pending_operations", "destroy"]
    assert "remove" not in stack.calls


def test_pending_updates_and_deletes_do_not_keep_the_stack() -> None:
    """Resources being updated or deleted are in the state: destroy takes care of them."""
    pending = [
        lifecycle.PendingOperation(kind, "aws:ecs/service:Service", "urn:x")
        for kind in ("updating", "deleting")
    ]
    stack = FakeStack(pending=pending)
    scenario(stack)
    assert stack.calls[-1] == "remove"


def test_the_checkpoint_pending_operations_are_read_as_exported() -> None:
    deployment = {
        "pending_operations": [
            {"resource": {"urn": "urn:a", "type": "aws:ec2/vpc:Vpc"}, "type": "creating"},
        ]
    }
    assert lifecycle.pending_operations_of(deployment) == [
        lifecycle.PendingOperation("creating", "aws:ec2/vpc:Vpc", "urn:a")
    ]
    assert lifecycle.pending_operations_of({}) == []


# --- a revision ECS rolls back ------------------------------------------------------------------


def test_a_rollback_that_fails_up_and_stays_wanted_passes() -> None:
    stack = FakeStack()
    scenario(stack)
    assert not stack.unhealthy  # switched back before the cleanup
    assert stack.calls[-1] == "remove"


def test_an_up_that_reports_success_after_a_rollback_fails_the_test() -> None:
    """An old provider called a rolled-back service stable: `up` succeeded (pulumi-aws#4487)."""
    stack = FakeStack(rollback="succeeds")
    with pytest.raises(RollbackReportedAsSuccess, match="4487"):
        scenario(stack)
    assert stack.calls[-3:] == ["pending_operations", "destroy", "remove"]
    assert "use_unhealthy_name False" in stack.calls


def test_a_failure_other_than_the_ecs_wait_is_not_taken_for_the_rollback() -> None:
    stack = FakeStack(rollback="build")
    with pytest.raises(RuntimeError, match="docker build failed"):
        scenario(stack)


def test_a_state_that_claims_the_failed_revision_runs_fails_the_test() -> None:
    """An update planned for the init errors only (no taskDefinition diff) sends nothing to
    ECS: the next `up` would succeed and leave the old revision running."""
    stack = FakeStack(hidden=True)
    clock = Clock()
    with pytest.raises(RollbackHidden, match="taskDefinition"):
        scenario(stack, clock, Budget(rollback=200, rollback_pause=60))
    # Previewed again while the rollback may still run: at 0, 60, 120 and 180 s of the 200 s,
    # after the scenario's own two (after the first up, after the switch to Service Connect).
    assert stack.calls.count("preview --refresh") == 2 + 4


def test_a_rollback_that_shows_late_is_waited_for() -> None:
    """An `up` whose wait timed out before the circuit breaker tripped: the rollback shows in
    a later refreshed preview."""
    stack = FakeStack(hidden=True)
    previews = 0
    original = stack.preview

    def later(refresh: bool = False) -> Preview:
        nonlocal previews
        previews += 1
        stack.hidden = previews < 3  # the second, first and second rollback previews miss it
        return original(refresh)

    stack.preview = later  # type: ignore[method-assign]
    scenario(stack)
    assert stack.calls.count("preview --refresh") == 3
    assert stack.calls[-1] == "remove"


def test_only_a_task_definition_update_of_that_service_counts() -> None:
    other = Step(
        f"{NAME_SERVICE_URN}::hello", "aws:ecs/service:Service", "update", ("taskDefinition",)
    )
    replaced = Step(f"{NAME_SERVICE_URN}::name", "aws:ecs/service:Service", "replace", ("name",))
    for steps in ([], [other], [replaced]):
        with pytest.raises(RollbackHidden):
            rollback.require_rollback_visible(steps)
    rollback.require_rollback_visible(
        [
            Step(
                f"{NAME_SERVICE_URN}::name",
                "aws:ecs/service:Service",
                "update",
                ("taskDefinition", "tags"),
            )
        ]
    )


def test_the_unhealthy_copy_changes_only_the_copy_of_names_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "apps" / "name").mkdir(parents=True)
    (root / "apps" / "hello").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".venv").mkdir()
    original = 'FROM python\nCMD ["python", "-m", "apps.name"]\n'
    (root / "apps" / "name" / "Dockerfile").write_text(original)
    (root / "apps" / "hello" / "Dockerfile").write_text("FROM python\n")
    (root / "Pulumi.yaml").write_text(
        "name: p\nruntime:\n  name: python\n  options:\n    toolchain: uv\n    virtualenv: .venv\n"
    )
    settings = root / "Pulumi.e2e.yaml"
    settings.write_text("config: {}\n")
    dest = rollback.unhealthy_copy(root, tmp_path / "copy", [settings])
    dockerfile = (dest / "apps" / "name" / "Dockerfile").read_text()
    # Docker runs the last CMD: the copy's name container exits at once.
    assert dockerfile.splitlines()[-1] == rollback.UNHEALTHY_CMD
    assert dockerfile.startswith(original)
    assert (root / "apps" / "name" / "Dockerfile").read_text() == original
    assert (dest / "apps" / "hello" / "Dockerfile").read_text() == "FROM python\n"
    assert (dest / "Pulumi.e2e.yaml").read_text() == "config: {}\n"
    # The project's virtualenv runs the copy's program as it is: no `uv sync` from the copy.
    runtime = yaml.safe_load((dest / "Pulumi.yaml").read_text())["runtime"]
    assert runtime == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": str((root / ".venv").resolve())},
    }
    assert not (dest / ".venv").exists()
    assert not (dest / ".git").exists()


def test_an_interrupt_still_destroys_the_stack() -> None:
    """A cancelled CI run delivers SIGINT first: the billed stack must still go."""
    stack = FakeStack()

    def interrupted(stack: lifecycle.E2EStack, **_: object) -> None:
        stack.up()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scenario(stack, run=interrupted)
    # Cancelled first: a CLI killed outright leaves the stack locked, and destroy would fail.
    assert stack.calls == ["up", "cancel", "pending_operations", "destroy", "remove"]


def test_a_failed_destroy_is_reported_without_hiding_the_original_failure() -> None:
    stack = FakeStack(fail_at="preview --refresh", destroy_failures=4)
    with pytest.raises(RuntimeError, match="preview --refresh failed on purpose") as failure:
        scenario(stack)
    notes = " ".join(getattr(failure.value, "__notes__", []))
    assert "cleanup failed" in notes
    assert "DependencyViolation" in notes
    assert "pulumi destroy -s e2e-fake" in notes
    # Its state is the only record of what is left: a stack that failed to destroy is kept.
    assert stack.calls == ["up", "preview --refresh", "pending_operations", *["destroy"] * 4]


def test_a_failed_destroy_after_a_passing_scenario_fails_the_test() -> None:
    stack = FakeStack(destroy_failures=4)
    with pytest.raises(CleanupFailed, match="DependencyViolation"):
        scenario(stack)
    assert "remove" not in stack.calls


def test_a_failed_stack_rm_is_reported() -> None:
    stack = FakeStack(fail_at="remove")
    with pytest.raises(CleanupFailed, match="destroyed but `pulumi stack rm` failed"):
        scenario(stack)


# --- whether it runs ------------------------------------------------------------------------------


def present(command: str) -> str:
    return f"/usr/local/bin/{command}"


def absent(_: str) -> None:
    return None


READY = {"AWS_ACCESS_KEY_ID": "AKIA...", "AWS_REGION": "eu-west-1", "E2E_DEPLOY": "1"}


def test_with_nothing_it_skips_in_one_line_naming_each_missing_thing(tmp_path: Path) -> None:
    missing = lifecycle.missing_requirements({}, absent, tmp_path)
    verdict = lifecycle.skip_or_fail(missing, {})
    assert verdict is not None
    action, reason = verdict
    assert action == "skip"
    assert "\n" not in reason
    for what in ("pulumi CLI", "docker", "AWS credentials", "AWS_REGION", "E2E_DEPLOY=1"):
        assert what in reason


def test_opted_in_a_missing_prerequisite_fails_instead_of_skipping(tmp_path: Path) -> None:
    environ = {**READY, "AWS_ACCESS_KEY_ID": ""}
    missing = lifecycle.missing_requirements(environ, present, tmp_path)
    assert missing == ["AWS credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE or ~/.aws)"]
    assert lifecycle.skip_or_fail(missing, environ) == (
        "fail",
        "end-to-end test on AWS not run: missing " + missing[0],
    )


def test_everything_present_but_the_opt_in_still_skips(tmp_path: Path) -> None:
    """A developer with credentials and the CLI who runs ./dev test deploys nothing."""
    environ = {k: v for k, v in READY.items() if k != "E2E_DEPLOY"}
    missing = lifecycle.missing_requirements(environ, present, tmp_path)
    assert missing == ["E2E_DEPLOY=1 (it deploys a real, billed stack for about 30 minutes)"]
    verdict = lifecycle.skip_or_fail(missing, environ)
    assert verdict is not None
    assert verdict[0] == "skip"


def test_everything_present_runs(tmp_path: Path) -> None:
    assert lifecycle.missing_requirements(READY, present, tmp_path) == []
    assert lifecycle.skip_or_fail([], READY) is None


def test_a_shared_credentials_file_counts_and_the_default_region_too(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    environ = {"AWS_DEFAULT_REGION": "eu-west-1", "E2E_DEPLOY": "1"}
    assert lifecycle.missing_requirements(environ, present, tmp_path) == []


# --- the stack's name and configuration ---------------------------------------------------------


def test_the_stack_is_the_fixed_e2e_one_that_the_deploy_role_lists() -> None:
    """The scoped deploy role changes only the stacks its `stacks` lists (by name in ECS, ECR
    and log group ARNs, and by the Stack tag): a per-run name would be AccessDenied. One
    fixed name works because the workflow runs one at a time."""
    assert lifecycle.stack_name({}) == lifecycle.StackName("e2e", "e2e")
    assert lifecycle.stack_name({"PULUMI_ORG": "acme"}) == lifecycle.StackName("e2e", "acme/e2e")
    assert lifecycle.DEFAULT_STACK in DEFAULT_STACKS
    named = lifecycle.stack_name({"E2E_STACK": "e2e-sandbox", "PULUMI_ORG": "acme"})
    assert named == lifecycle.StackName("e2e-sandbox", "acme/e2e-sandbox")


@pytest.mark.parametrize(
    "bad", ["dev", "prod", "e2e-", "E2E-1", "e2e--x", "e2e-a-b-c", "e2e-" + "x" * 31]
)
def test_only_e2e_stacks_can_be_named(bad: str) -> None:
    """The test destroys what it names: it must never be pointed at dev or prod."""
    with pytest.raises(ValueError, match="E2E_STACK"):
        lifecycle.stack_name({"E2E_STACK": bad})


def test_the_config_is_dev_in_the_environment_region_tagged_with_the_e2e_stack() -> None:
    dev = lifecycle.dev_config()
    config = lifecycle.e2e_config(dev, "e2e-abc", "eu-west-1")
    assert config["aws:region"] == "eu-west-1"
    assert config["aws:defaultTags"] == {
        "tags": {"Project": "fargate-service-discovery", "Stack": "e2e-abc"}
    }
    project = {k: v for k, v in config.items() if not k.startswith("aws:")}
    assert project == {k: v for k, v in dev.items() if not k.startswith("aws:")}
    assert dev["aws:defaultTags"]["tags"]["Stack"] == "dev"  # dev's own file data untouched
    assert lifecycle.initial_name_count(config) >= 2


def test_the_config_carries_the_tags_the_program_requires_of_its_stack() -> None:
    """stack/ refuses a stack whose aws:defaultTags are not Project/Stack=<its name> (the
    deploy role's tag scope): the e2e stack's config passes that check, another stack's
    tags would not."""
    config_values = lifecycle.e2e_config(lifecycle.dev_config(), "e2e", "eu-west-1")
    tags = json.dumps(config_values["aws:defaultTags"])
    assert stack_settings.default_tag_problems(tags, lifecycle.PROJECT, "e2e") == []
    assert stack_settings.default_tag_problems(tags, lifecycle.PROJECT, "dev") != []


def test_a_single_name_task_cannot_show_balancing() -> None:
    dev = lifecycle.dev_config()
    one = {**dev, "fargate-service-discovery:name": {**dev["fargate-service-discovery:name"]}}
    one["fargate-service-discovery:name"]["desiredCount"] = 1
    with pytest.raises(ValueError, match="at least 2"):
        lifecycle.e2e_config(one, "e2e-abc", "eu-west-1")


def test_the_url_must_be_an_http_url() -> None:
    assert lifecycle.url_of({"url": URL}) == URL
    for outputs in ({}, {"url": None}, {"url": "entry.elb.amazonaws.com"}):
        with pytest.raises(AssertionError, match="url"):
            lifecycle.url_of(outputs)


# --- the Automation API adapter ----------------------------------------------------------------


def engine_words(summary: dict[str, int]) -> Any:
    return summary


class SdkStack:
    """A stand-in for pulumi.automation.Stack that answers with the SDK's own result types,
    so the adapter's reading of them is checked against the installed SDK."""

    name = "acme/e2e-abc"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.workspace = self

    def up(self, **kwargs: Any) -> auto.UpResult:
        self.calls.append(("up", kwargs))
        summary = auto.UpdateSummary(
            kind="update",
            start_time=None,  # type: ignore[arg-type]
            message="",
            environment={},
            config={},
            result="succeeded",
            # The engine's JSON words, as the SDK passes them on (typed as OpType keys).
            resource_changes=engine_words({"same": 39, "update": 1}),
        )
        outputs = {"url": auto.OutputValue(URL, secret=False)}
        return auto.UpResult("", "", summary, outputs)

    def preview(self, **kwargs: Any) -> auto.PreviewResult:
        self.calls.append(("preview", kwargs))
        # What the engine sends for name's service after a rollback, read by the SDK's parser.
        kwargs["on_event"](
            auto.EngineEvent.from_json(
                {
                    "sequence": 1,
                    "timestamp": 0,
                    "resourcePreEvent": {
                        "metadata": {
                            "op": "update",
                            "urn": f"{NAME_SERVICE_URN}::name",
                            "type": "aws:ecs/service:Service",
                            "provider": "",
                            "diffs": ["taskDefinition"],
                        }
                    },
                }
            )
        )
        kwargs["on_event"](auto.EngineEvent.from_json({"sequence": 2, "timestamp": 0}))
        return auto.PreviewResult("~ name update", "", engine_words({"same": 40}))

    # The workspace's side: the CLI itself, for `stack export` without --show-secrets.
    work_dir = "/project"
    env_vars: Mapping[str, str] = MappingProxyType({})

    @property
    def pulumi_command(self) -> SdkStack:
        return self

    def run(self, args: list[str], cwd: str, env: Mapping[str, str]) -> auto.CommandResult:
        self.calls.append(("run", {"args": args, "cwd": cwd}))
        deployment = {
            "pending_operations": [
                {
                    "resource": {"urn": "urn:n", "type": "aws:ec2/natGateway:NatGateway"},
                    "type": "creating",
                }
            ]
        }
        return auto.CommandResult(json.dumps({"version": 3, "deployment": deployment}), "", 0)

    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool) -> None:
        self.calls.append(("set_config", {"key": key, "value": value.value, "path": path}))

    def destroy(self, **kwargs: Any) -> None:
        self.calls.append(("destroy", kwargs))

    def remove_stack(self, name: str) -> None:
        self.calls.append(("remove_stack", {"name": name}))


def test_the_adapter_reads_the_sdk_results_and_sets_config_by_path() -> None:
    sdk = SdkStack()
    lines: list[str] = []
    stack = lifecycle.AutomationStack(sdk, log=lines.append)
    assert stack.name == "acme/e2e-abc"
    assert stack.up() == Update({"url": URL}, {"same": 39, "update": 1})
    preview = stack.preview(refresh=True)
    assert preview.change_summary == {"same": 40}
    assert preview.stdout == "~ name update"
    # The steps the rollback check reads, from the engine's resource-pre events only.
    assert preview.steps == (
        Step(f"{NAME_SERVICE_URN}::name", "aws:ecs/service:Service", "update", ("taskDefinition",)),
    )
    stack.set_config(lifecycle.DESIRED_COUNT_KEY, "3")
    stack.destroy()
    stack.remove()
    assert [op for op, _ in sdk.calls] == ["up", "preview", "set_config", "destroy", "remove_stack"]
    assert sdk.calls[1][1]["refresh"] is True
    # Pending operations from `stack export` without --show-secrets (the secrets provider may
    # be missing), in the project directory.
    assert stack.pending_operations() == [
        lifecycle.PendingOperation("creating", "aws:ec2/natGateway:NatGateway", "urn:n")
    ]
    assert sdk.calls[-1][1] == {
        "args": ["stack", "export", "--stack", "acme/e2e-abc"],
        "cwd": "/project",
    }
    # name.desiredCount is a path into the name object, not a key of its own.
    assert sdk.calls[2][1] == {"key": lifecycle.DESIRED_COUNT_KEY, "value": "3", "path": True}
    assert sdk.calls[4][1] == {"name": "acme/e2e-abc"}
    # The CLI's output goes to the log (the workflow shows it live); the preview as a diff.
    for op, kwargs in sdk.calls:
        if op in ("up", "preview", "destroy"):
            assert kwargs["on_output"] == lines.append
            assert kwargs["on_error"] == lines.append
    assert sdk.calls[1][1]["diff"] is True
    # The policy pack runs on the real account's preview and update, as in the workflows.
    for op, kwargs in sdk.calls[:2]:
        assert kwargs["policy_packs"] == [str(lifecycle.ROOT / "policy")], op
    assert (lifecycle.POLICY_PACK / "PulumiPolicy.yaml").is_file()


def test_a_stack_whose_config_file_exists_is_not_created(tmp_path: Path) -> None:
    """Writing the settings would overwrite another stack's config; nothing runs."""
    (tmp_path / "Pulumi.e2e-abc.yaml").write_text("config: {}\n")
    name = lifecycle.StackName("e2e-abc", "e2e-abc")
    with pytest.raises(FileExistsError):
        lifecycle.create_stack(name, {}, {}, root=tmp_path)
    assert (tmp_path / "Pulumi.e2e-abc.yaml").read_text() == "config: {}\n"


def test_a_stack_left_by_an_earlier_run_is_named_with_the_way_to_clear_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is fixed, so a run killed before its cleanup blocks the next one: the error
    says how to clear it, and the config file written for the failed init goes away."""

    def exists(*_: Any, **__: Any) -> None:
        raise auto.StackAlreadyExistsError(
            auto.CommandResult(stdout="", stderr="stack 'acme/e2e' already exists", code=255)
        )

    monkeypatch.setattr(auto, "create_stack", exists)
    name = lifecycle.StackName("e2e", "acme/e2e")
    with pytest.raises(auto.StackAlreadyExistsError) as raised:
        lifecycle.create_stack(name, {"aws:region": "eu-west-1"}, {}, root=tmp_path)
    assert "E2E_STACK=e2e python -m tests.e2e.lifecycle cleanup" in "".join(raised.value.__notes__)
    assert not (tmp_path / "Pulumi.e2e.yaml").exists()


class Workspace:
    """The settings side of a LocalWorkspace: Pulumi.<stack>.yaml as StackSettings."""

    def __init__(self, settings: auto.StackSettings | None) -> None:
        self.settings = settings
        self.saved: list[tuple[str, auto.StackSettings]] = []
        self.workspace = self

    def stack_settings(self, name: str) -> auto.StackSettings:
        if self.settings is None:  # as LocalWorkspace says when Pulumi.<stack>.yaml is missing
            raise FileNotFoundError("failed to find stack settings file in workdir: /project")
        return self.settings

    def save_stack_settings(self, name: str, settings: auto.StackSettings) -> None:
        self.saved.append((name, settings))


KMS_STACK = {
    "secrets_providers": {
        "type": "cloud",
        "state": {"url": "awskms://alias/pulumi", "encryptedkey": "AQICAHh...=="},
    }
}


def test_a_fresh_checkout_gets_the_secrets_provider_its_checkpoint_records() -> None:
    """The leftover job runs on a new runner, without Pulumi.e2e.yaml: without the provider and
    data key the CLI falls back to a passphrase and every later run stops there."""
    stack = Workspace(None)
    assert lifecycle.restore_secrets_settings(stack, KMS_STACK, "e2e") is True
    ((name, settings),) = stack.saved
    assert name == "e2e"
    assert settings.secrets_provider == "awskms://alias/pulumi"
    assert settings.encrypted_key == "AQICAHh...=="


def test_settings_that_name_their_provider_or_a_service_managed_stack_are_left_alone() -> None:
    kept = Workspace(auto.StackSettings(secrets_provider="awskms://alias/x", encrypted_key="k"))
    assert lifecycle.restore_secrets_settings(kept, KMS_STACK, "e2e") is False
    service = {"secrets_providers": {"type": "service", "state": {"url": "https://api"}}}
    fresh = Workspace(None)
    assert lifecycle.restore_secrets_settings(fresh, service, "e2e") is False
    assert lifecycle.restore_secrets_settings(fresh, {}, "e2e") is False
    assert kept.saved == fresh.saved == []


def test_the_unhealthy_revision_runs_from_a_copy_and_the_project_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "apps" / "name").mkdir(parents=True)
    (project / "apps" / "name" / "Dockerfile").write_text("FROM python\n")
    (project / "Pulumi.e2e-abc.yaml").write_text("config: {}\n")
    (project / "Pulumi.yaml").write_text("name: p\nruntime: {name: python}\n")
    sdk = SdkStack()
    sdk.work_dir = str(project)
    selected: list[tuple[str, str]] = []
    copy = SdkStack()

    def select_stack(name: str, *, work_dir: str, opts: auto.LocalWorkspaceOptions) -> SdkStack:
        selected.append((name, work_dir))
        assert opts.pulumi_command is sdk  # the same CLI, interrupts forwarded alike
        return copy

    monkeypatch.setattr(auto, "select_stack", select_stack)
    stack = lifecycle.AutomationStack(sdk, log=NO_OUTPUT)
    stack.use_unhealthy_name(True)
    ((name, work_dir),) = selected
    assert name == "acme/e2e-abc"
    copied = Path(work_dir)
    assert rollback.UNHEALTHY_CMD in (copied / "apps" / "name" / "Dockerfile").read_text()
    assert (copied / "Pulumi.e2e-abc.yaml").is_file()
    stack.up()
    assert [op for op, _ in copy.calls] == ["up"]
    stack.use_unhealthy_name(False)
    stack.up()
    assert [op for op, _ in sdk.calls] == ["up"]
    assert not copied.exists()


def test_a_deployment_that_never_finishes_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider says only that its wait timed out; the note names the Spot shortage that
    makes a dev stack's deployment unable to finish, and where to look."""
    sdk = SdkStack()
    error = auto.CommandError(
        auto.CommandResult(
            "",
            "error: waiting for ECS Service (arn:aws:ecs:...:service/c/name-abc) update: timeout "
            "while waiting for state to become 'tfSTABLE' (last state: 'tfPENDING', timeout: "
            "20m0s)",
            255,
        )
    )

    def up(**_: Any) -> None:
        raise error

    monkeypatch.setattr(sdk, "up", up)
    with pytest.raises(auto.CommandError) as raised:
        lifecycle.AutomationStack(sdk, log=NO_OUTPUT).up()
    assert "Fargate Spot" in " ".join(raised.value.__notes__)
    assert lifecycle.deployment_note("error: docker build failed") is None


def test_the_note_names_the_wait_the_services_are_given() -> None:
    """components/service.py's DEPLOYMENT_WAIT, read from its source (importing it would import
    pulumi_aws, seconds of this suite for one constant)."""
    tree = ast.parse((lifecycle.ROOT / "components" / "service.py").read_text())
    (call,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["DEPLOYMENT_WAIT"]
    ]
    assert isinstance(call, ast.Call)
    waits = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert waits == {"create": "20m", "update": "20m"}
    note = lifecycle.deployment_note(lifecycle.DEPLOYMENT_TIMEOUT)
    assert note is not None
    assert "20 minutes" in note


class LeftoverStack(SdkStack):
    """A stack an earlier run left on a self-managed backend, selected on a fresh runner."""

    def __init__(self) -> None:
        super().__init__()
        self.settings: auto.StackSettings | None = None

    def run(self, args: list[str], cwd: str, env: Mapping[str, str]) -> auto.CommandResult:
        self.calls.append(("export", {"args": args}))
        return auto.CommandResult(json.dumps({"version": 3, "deployment": KMS_STACK}), "", 0)

    def stack_settings(self, name: str) -> auto.StackSettings:
        if self.settings is None:
            raise FileNotFoundError(name)
        return self.settings

    def save_stack_settings(self, name: str, settings: auto.StackSettings) -> None:
        self.calls.append(("save_stack_settings", {"secrets_provider": settings.secrets_provider}))
        self.settings = settings

    def cancel(self) -> None:
        self.calls.append(("cancel", {}))


def test_the_leftover_job_restores_settings_then_cancels_then_destroys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    leftover = LeftoverStack()
    monkeypatch.setattr(auto, "select_stack", lambda *_, **__: leftover)
    # Not in this test process: SIGTERM must keep ending pytest.
    monkeypatch.setattr(interrupt, "terminate_as_interrupt", lambda: None)
    environ = {lifecycle.STACK_ENV: "e2e", lifecycle.CLEANUP_SECONDS_ENV: "780"}
    assert lifecycle.main(["cleanup"], environ, command=object()) == 0
    assert [op for op, _ in leftover.calls] == [
        "export",  # the secrets provider the checkpoint records
        "save_stack_settings",
        "cancel",  # a lock a killed run left
        "export",  # pending operations, before destroy drops them
        "destroy",
        "remove_stack",
    ]
    assert leftover.calls[1][1] == {"secrets_provider": "awskms://alias/pulumi"}
