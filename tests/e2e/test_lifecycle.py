"""The end-to-end test's own logic, without AWS: fakes stand in for the stack, the URL and time.

The real run (test_e2e.py) costs half an hour and an AWS bill, so its checks must be right
before it runs: an answer check that accepts a wrong body, a task count that counts answers,
a "no changes" check that lets an update through, or a cleanup that skips `destroy` after a
failure would each pass silently on AWS or leave a billed stack behind.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto
from pulumi.automation import OpType

import stack as stack_settings
from deploy.github_oidc.names import DEFAULT_STACKS
from tests.e2e import lifecycle
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

# The seed's README shows this answer (us-east-2 hostnames of two Fargate tasks).
SEED_ANSWER = (
    "Hello (from ip-10-0-138-3.us-east-2.compute.internal) "
    "Sophia (from ip-10-0-191-125.us-east-2.compute.internal)"
)
URL = "http://entry-1234567890.us-east-1.elb.amazonaws.com/"
NO_OUTPUT: Callable[[str], None] = lambda _: None  # noqa: E731


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
    reachable: how many name tasks hello reaches at most (1: stuck on the first record).
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
    ) -> None:
        self.calls: list[str] = []
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
        self.ups += 1
        if not self.stale or self.running == 0:
            self.running = self.desired
        return Update({"url": URL}, {"create": 60} if self.ups == 1 else self.scale_summary)

    def preview(self) -> Preview:
        self._call("preview")
        return Preview(self.preview_summary, "diff text of the preview")

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
    with lifecycle.cleaned_up(stack, log=NO_OUTPUT):
        run(
            stack,
            initial=2,
            fetch=stack.fetch,
            budget=budget or Budget(),
            log=NO_OUTPUT,
            sample=functools.partial(lifecycle.sample_until, clock=clock, sleep=clock.sleep),
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
        "preview",
        f"set_config {lifecycle.MIN_COUNT_KEY}=3",
        f"set_config {lifecycle.DESIRED_COUNT_KEY}=3",
        "up",
        "destroy",
        "remove",
    ]


def test_hello_reaching_one_name_task_only_fails_within_the_settle_budget() -> None:
    """One name task behind hello is the broken-discovery case (the seed's Node client sends
    everything to the first record): at least two distinct tasks must answer."""
    stack = FakeStack(reachable=1)
    clock = Clock()
    with pytest.raises(NotSettled, match="wanted 2 distinct name tasks within 120 s"):
        scenario(stack, clock, Budget(settle=120, scale=90))
    assert 120 <= clock.now - 1000 <= 123
    assert stack.calls == ["up", "destroy", "remove"]


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
    assert stack.calls == ["up", "preview", "destroy", "remove"]


def test_a_scale_out_that_replaces_resources_fails() -> None:
    stack = FakeStack(scale_summary={"same": 38, "replace": 1, "update": 1})
    with pytest.raises(UnexpectedChanges, match="in place"):
        scenario(stack)
    assert stack.calls[-2:] == ["destroy", "remove"]


@pytest.mark.parametrize("op", ["up", "preview", f"set_config {lifecycle.DESIRED_COUNT_KEY}=3"])
def test_a_failure_anywhere_still_destroys_then_removes_the_stack(op: str) -> None:
    stack = FakeStack(fail_at=op)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        scenario(stack)
    assert stack.calls[-3:] == [op, "destroy", "remove"]


def test_a_destroy_that_fails_once_is_retried() -> None:
    """AWS releases a stopped task's network interface late, and its security group cannot
    be deleted until then: a second destroy usually finishes the job."""
    stack = FakeStack(destroy_failures=1)
    scenario(stack)
    assert stack.calls[-3:] == ["destroy", "destroy", "remove"]


def test_an_interrupt_still_destroys_the_stack() -> None:
    """A cancelled CI run delivers SIGINT first: the billed stack must still go."""
    stack = FakeStack()

    def interrupted(stack: lifecycle.E2EStack, **_: object) -> None:
        stack.up()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scenario(stack, run=interrupted)
    assert stack.calls == ["up", "destroy", "remove"]


def test_a_failed_destroy_is_reported_without_hiding_the_original_failure() -> None:
    stack = FakeStack(fail_at="preview", destroy_failures=2)
    with pytest.raises(RuntimeError, match="preview failed on purpose") as failure:
        scenario(stack)
    notes = " ".join(getattr(failure.value, "__notes__", []))
    assert "cleanup failed" in notes
    assert "DependencyViolation" in notes
    assert "pulumi destroy -s e2e-fake" in notes
    # Its state is the only record of what is left: a stack that failed to destroy is kept.
    assert stack.calls == ["up", "preview", "destroy", "destroy"]


def test_a_failed_destroy_after_a_passing_scenario_fails_the_test() -> None:
    stack = FakeStack(destroy_failures=2)
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
        return auto.PreviewResult("~ name update", "", engine_words({"same": 40}))

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
    assert stack.preview() == Preview({"same": 40}, "~ name update")
    stack.set_config(lifecycle.DESIRED_COUNT_KEY, "3")
    stack.destroy()
    stack.remove()
    assert [op for op, _ in sdk.calls] == ["up", "preview", "set_config", "destroy", "remove_stack"]
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
