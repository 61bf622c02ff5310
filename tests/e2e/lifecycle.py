"""The end-to-end test's logic, apart from AWS: unit-tested with fakes in test_lifecycle.py.

The scenario (`run_scenario`) drives an ephemeral stack of this program through the
`E2EStack` interface: `up`, the seed's answer from at least two distinct name tasks, a second
`preview` that must change nothing (a perpetual diff shows up here and nowhere else), a scale-out
of name that hello must pick up, and then `destroy` and `stack rm` whatever happened
(`cleaned_up`). `AutomationStack` implements the interface with Pulumi's Automation API; the
fakes in the unit tests implement it in memory.

Run as a module, it destroys and removes a stack a killed run left behind (the workflow's
cleanup step): ``python -m tests.e2e.lifecycle cleanup`` (stack from ``E2E_STACK``).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.e2e.rollback import (
    RollbackHidden,
    Step,
    require_failed_update,
    require_rollback_visible,
    unhealthy_copy,
)

ROOT = Path(__file__).resolve().parents[2]
# The project's guardrails (policy/), run on every preview and update as the workflows run
# them (`policyPacks: policy`): a mandatory violation fails the e2e run, against the values
# a real account gives back.
POLICY_PACK = ROOT / "policy"
PROJECT = "fargate-service-discovery"
DESIRED_COUNT_KEY = f"{PROJECT}:name.desiredCount"
# Autoscaling owns name's count once the service exists (desiredCount is ignored after
# creation): the test scales by raising the autoscaling floor, which Application Auto Scaling
# applies at once. desiredCount follows, as the configuration requires it within the range.
MIN_COUNT_KEY = f"{PROJECT}:name.minCount"
# The other discovery mode (docs/service-connect.md): the scenario switches the running stack
# to it, so both modes meet AWS in one run.
DISCOVERY_MODE_KEY = f"{PROJECT}:discoveryMode"

# The opt-in. It deploys a real, billed stack for about half an hour, so `./dev test` on a
# machine that happens to hold AWS credentials must not start one. When set, a missing
# prerequisite is a failure, not a skip (the e2e workflow sets it).
OPT_IN = "E2E_DEPLOY"
# Optional: the stack's name; without it, DEFAULT_STACK.
STACK_ENV = "E2E_STACK"
# The stack the deploy role of deploy/github_oidc lists by default (its `stacks`: dev, prod,
# e2e): that role may change a stack's resources only by its listed name and Stack tag, so
# the workflow deploys this one fixed name (one run at a time) and clears what an earlier
# run left behind before it starts.
DEFAULT_STACK = "e2e"
# Optional: a secrets provider for `pulumi stack init` on a self-managed backend, which
# otherwise asks for a passphrase (for example awskms://alias/pulumi).
SECRETS_PROVIDER_ENV = "E2E_SECRETS_PROVIDER"
# A short, recognisable name: the stack name is part of the ECS cluster name, the task
# definition families and the log groups (fargate-service-discovery-<stack>).
# Other e2e-<suffix> names are for accounts where the deploying identity is not the scoped
# deploy role (each must then be listed in its `stacks` too); the same characters as there.
STACK_NAME = re.compile(r"e2e(?:-[a-z0-9]{1,30}){0,2}")

AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


# --- whether it can run -------------------------------------------------------------------


def aws_region(environ: Mapping[str, str]) -> str | None:
    return environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None


def has_aws_credentials(environ: Mapping[str, str], home: Path) -> bool:
    """Credentials the AWS SDKs would find, judged without a network call (this runs at
    every pytest collection). Instance-profile credentials cannot be seen this way: name a
    profile or export the variables there."""
    if any(environ.get(name) for name in AWS_CREDENTIAL_VARIABLES):
        return True
    files = [
        environ.get("AWS_SHARED_CREDENTIALS_FILE") or str(home / ".aws" / "credentials"),
        environ.get("AWS_CONFIG_FILE") or str(home / ".aws" / "config"),
    ]
    return any(Path(f).is_file() for f in files)


def missing_requirements(
    environ: Mapping[str, str], which: Callable[[str], str | None], home: Path
) -> list[str]:
    """What the end-to-end test lacks here, each in words a reader can act on; [] means run."""
    missing = []
    if which("pulumi") is None:
        missing.append("the pulumi CLI on PATH")
    if which("docker") is None:
        missing.append("docker (up builds the images)")
    if not has_aws_credentials(environ, home):
        missing.append("AWS credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE or ~/.aws)")
    if aws_region(environ) is None:
        missing.append("AWS_REGION")
    if environ.get(OPT_IN) != "1":
        missing.append(f"{OPT_IN}=1 (it deploys a real, billed stack for about 30 minutes)")
    return missing


def skip_or_fail(missing: list[str], environ: Mapping[str, str]) -> tuple[str, str] | None:
    """None to run; else ("skip" or "fail", the one-line reason). Opted in, nothing may be
    missing: the workflow must fail, not pass by skipping."""
    if not missing:
        return None
    reason = "end-to-end test on AWS not run: missing " + ", ".join(missing)
    return ("fail" if environ.get(OPT_IN) == "1" else "skip"), reason


# --- the stack ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StackName:
    short: str  # the name the program sees (pulumi.get_stack()) and tags resources with
    qualified: str  # <org>/<short> when an organization is given


def stack_name(environ: Mapping[str, str]) -> StackName:
    short = environ.get(STACK_ENV) or DEFAULT_STACK
    if not STACK_NAME.fullmatch(short):
        raise ValueError(f"{STACK_ENV}={short!r}: must match {STACK_NAME.pattern}")
    org = environ.get("PULUMI_ORG")
    return StackName(short, f"{org}/{short}" if org else short)


def e2e_config(dev: Mapping[str, Any], stack: str, region: str) -> dict[str, Any]:
    """The dev stack's configuration (the cheapest sensible shape) for `stack` in `region`.

    The resources are tagged with the e2e stack's own name, like every stack's. name must
    start with two tasks at least: the test counts distinct name tasks behind hello.
    """
    config = copy.deepcopy(dict(dev))
    config["aws:region"] = region
    config["aws:defaultTags"] = {"tags": {"Project": PROJECT, "Stack": stack}}
    if initial_name_count(config) < 2:
        raise ValueError(f"{PROJECT}:name.desiredCount must be at least 2 for the e2e test")
    return config


def initial_name_count(config: Mapping[str, Any]) -> int:
    return int(config[f"{PROJECT}:name"]["desiredCount"])


def dev_config(root: Path = ROOT) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((root / "Pulumi.dev.yaml").read_text())["config"]
    return config


# --- the answer -----------------------------------------------------------------------------

# The seed's wire format: `Hello (from <hello host>) <Name> (from <name host>)`, nothing else.
ANSWER = re.compile(
    r"Hello \(from (?P<hello>[^\s()]+)\) (?P<name>[^\s()]+) \(from (?P<name_host>[^\s()]+)\)"
)


class WrongAnswer(AssertionError):
    """A 200 that is not the seed's answer: a defect, never a matter of waiting."""


@dataclass(frozen=True)
class Answer:
    hello_host: str
    name: str
    name_host: str


def parse_answer(text: str) -> Answer:
    match = ANSWER.fullmatch(text)
    if match is None:
        raise WrongAnswer(f"not the seed's answer 'Hello (from h) Name (from n)': {text[:200]!r}")
    return Answer(match["hello"], match["name"], match["name_host"])


@dataclass(frozen=True)
class Reply:
    status: int  # 0: no HTTP answer at all (DNS, connection, timeout); body says why
    body: str


def http_get(url: str, timeout: float = 5.0) -> Reply:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return Reply(response.status, response.read(65536).decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(4096).decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as exc:
        return Reply(0, f"{type(exc).__name__}: {exc}")


@dataclass
class Sample:
    """What a series of requests to the stack's URL saw."""

    name_tasks: set[str] = field(default_factory=set)
    hello_tasks: set[str] = field(default_factory=set)
    answers: int = 0
    failures: int = 0
    last_failure: str = ""

    def add(self, answer: Answer) -> None:
        self.answers += 1
        self.name_tasks.add(answer.name_host)
        self.hello_tasks.add(answer.hello_host)

    def __str__(self) -> str:
        return (
            f"{len(self.name_tasks)} distinct name task(s) {sorted(self.name_tasks)} through "
            f"{len(self.hello_tasks)} hello task(s), {self.answers} answer(s), "
            f"{self.failures} failure(s)"
            + (f", last: {self.last_failure}" if self.failures else "")
        )


class NotSettled(AssertionError):
    """The stack did not show the expected tasks within the time allowed."""


def sample_until(
    fetch: Callable[[], Reply],
    want: int,
    timeout: float,
    *,
    pause_after_failure: float = 2.0,
    pause_after_answer: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Sample:
    """Request until `want` distinct name tasks answered, or fail once `timeout` has passed.

    Errors (no DNS yet, 502/503 while targets register) are waited out; a 200 that is not the
    seed's answer fails at once.
    """
    deadline = clock() + timeout
    sample = Sample()
    while True:
        reply = fetch()
        if reply.status == 200:
            sample.add(parse_answer(reply.body))
            if len(sample.name_tasks) >= want:
                return sample
            pause = pause_after_answer
        else:
            sample.failures += 1
            sample.last_failure = f"{reply.status or 'no answer'}: {reply.body.strip()[:200]}"
            pause = pause_after_failure
        if clock() >= deadline:
            raise NotSettled(f"wanted {want} distinct name tasks within {timeout:.0f} s; {sample}")
        sleep(pause)


# --- what `preview` and `up` may change -------------------------------------------------------


class UnexpectedChanges(AssertionError):
    """A preview or update changed what it should have left alone."""


def _op(op: object) -> str:
    # The Automation API gives the engine's words ("same", "update"); OpType is a str enum.
    return str(getattr(op, "value", op))


def changes(summary: Mapping[Any, int]) -> dict[str, int]:
    """Every operation other than "same" that touches at least one resource."""
    return {_op(op): n for op, n in summary.items() if _op(op) != "same" and n}


def require_no_changes(summary: Mapping[Any, int], diff: str = "") -> None:
    """A second preview of an unchanged program: only "same", and at least one resource."""
    found = changes(summary)
    same = sum(n for op, n in summary.items() if _op(op) == "same")
    if found or same == 0:
        detail = f"\n{diff[-4000:]}" if diff else ""
        raise UnexpectedChanges(
            f"a preview right after `up` must change nothing (a perpetual diff otherwise); "
            f"summary {dict((_op(k), v) for k, v in summary.items())}{detail}"
        )


def require_in_place_update(summary: Mapping[Any, int]) -> None:
    """Scaling changes name's autoscaling floor in place: nothing created, replaced or deleted."""
    found = changes(summary)
    if set(found) != {"update"}:
        raise UnexpectedChanges(f"scaling name should update in place only; it did {found}")


# --- the scenario and its cleanup -------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    change_summary: Mapping[Any, int]
    stdout: str
    # Each resource's step (the engine's resource-pre events): what the rollback check reads.
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Update:
    outputs: Mapping[str, Any]
    change_summary: Mapping[Any, int]


@dataclass(frozen=True)
class PendingOperation:
    """An operation the engine started and never saw finish (`pending_operations` of the
    stack's checkpoint): for "creating", a resource may exist that the state does not hold."""

    kind: str
    type: str
    urn: str


class E2EStack(Protocol):
    """The operations the scenario needs; AutomationStack and the unit tests' fakes."""

    @property
    def name(self) -> str: ...

    def up(self) -> Update: ...

    def preview(self, refresh: bool = False) -> Preview: ...

    def set_config(self, key: str, value: str) -> None: ...

    def use_unhealthy_name(self, unhealthy: bool) -> None:
        """Switch the program to a name revision that cannot start (True), or back (False)."""

    def pending_operations(self) -> list[PendingOperation]: ...

    def cancel(self) -> None:
        """Release a lock an interrupted operation may have left (no error when none)."""

    def destroy(self) -> None: ...

    def remove(self) -> None: ...


@dataclass(frozen=True)
class Budget:
    """Upper bounds, in seconds, for the stack to show the tasks it should."""

    settle: float = 600.0  # after the first up: DNS of a new ALB, targets healthy, records
    scale: float = 300.0  # after the scale-out: a task starts, registers, hello refreshes
    # After the unhealthy revision's `up` failed: ECS may still be rolling back (an `up` that
    # timed out before the circuit breaker tripped), so refreshed previews are retried.
    rollback: float = 600.0
    rollback_pause: float = 60.0


def url_of(outputs: Mapping[str, Any]) -> str:
    url = outputs.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise AssertionError(f"the stack exports no http(s) url: {url!r}")
    return url


def run_scenario(
    stack: E2EStack,
    initial: int,
    fetch: Callable[[str], Reply],
    budget: Budget,
    log: Callable[[str], None] = print,
    sample: Callable[..., Sample] = sample_until,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """up; >= 2 name tasks answer; a refreshed no-op preview; scale name by one; hello sees it;
    switch to Service Connect, every task answers, a refreshed no-op preview; then a name
    revision that cannot start must fail `up` and stay wanted (rollback.py)."""
    url = url_of(stack.up().outputs)
    log(f"e2e: {stack.name} is up at {url}")
    seen = sample(lambda: fetch(url), max(initial, 2), budget.settle)
    log(f"e2e: before scaling: {seen}")

    # Refreshed: drift that only a read of the real resources shows (a value AWS normalises,
    # a default it fills in) is a perpetual diff too.
    preview = stack.preview(refresh=True)
    require_no_changes(preview.change_summary, preview.stdout)
    log("e2e: the second preview, refreshed, changes nothing")

    scaled = initial + 1
    stack.set_config(MIN_COUNT_KEY, str(scaled))
    stack.set_config(DESIRED_COUNT_KEY, str(scaled))
    update = stack.up()
    require_in_place_update(update.change_summary)
    if url_of(update.outputs) != url:
        raise AssertionError(f"scaling name changed the url: {url} -> {url_of(update.outputs)}")
    seen = sample(lambda: fetch(url), scaled, budget.scale)
    log(f"e2e: after scaling name to {scaled}: {seen}")

    check_service_connect(stack, url, scaled, fetch, budget, log, sample)
    check_rollback(stack, budget, log, clock, sleep)


def check_service_connect(
    stack: E2EStack,
    url: str,
    expected: int,
    fetch: Callable[[str], Reply],
    budget: Budget,
    log: Callable[[str], None] = print,
    sample: Callable[..., Sample] = sample_until,
) -> None:
    """Switch the running stack to ECS Service Connect in one `up` (name first, then hello:
    the program's order), require the seed's answer from every name task again, now through
    the proxies, and a refreshed preview that changes nothing (a perpetual diff in the Service
    Connect blocks, which the provider reads back from the deployment, shows here)."""
    stack.set_config(DISCOVERY_MODE_KEY, "serviceConnect")
    update = stack.up()
    if url_of(update.outputs) != url:
        raise AssertionError(f"switching to Service Connect changed the url: {url}")
    seen = sample(lambda: fetch(url), expected, budget.scale)
    log(f"e2e: through Service Connect: {seen}")
    preview = stack.preview(refresh=True)
    require_no_changes(preview.change_summary, preview.stdout)
    log("e2e: in Service Connect mode too, a refreshed preview changes nothing")


def check_rollback(
    stack: E2EStack,
    budget: Budget,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Deploy a name revision that cannot start: `up` must fail on the ECS service's wait
    (the circuit breaker rolled it back), and a refreshed preview must still want it, within
    budget.rollback (the rollback may still be running when the wait timed out)."""
    stack.use_unhealthy_name(True)
    try:
        failure: Exception | None = None
        try:
            stack.up()
        except Exception as exc:
            failure = exc
        require_failed_update(failure)
        log("e2e: `up` of the unhealthy name revision failed, as it must")
        deadline = clock() + budget.rollback
        while True:
            try:
                require_rollback_visible(stack.preview(refresh=True).steps)
                break
            except RollbackHidden as hidden:
                if clock() + budget.rollback_pause >= deadline:
                    raise
                log(f"e2e: {hidden}; previewing again in {budget.rollback_pause:.0f} s")
                sleep(budget.rollback_pause)
        log("e2e: after the rollback, a refreshed preview still updates name's task definition")
    finally:
        stack.use_unhealthy_name(False)


class CleanupFailed(Exception):
    """The scenario passed but its stack could not be destroyed (resources may be left)."""


# Waits before each further destroy. A stopped Fargate task's network interface is released
# minutes after the task stops, and its security group and subnets cannot be deleted until
# then (DependencyViolation); an immediate retry fails the same way.
DESTROY_RETRY_WAITS: tuple[float, ...] = (60.0, 120.0, 240.0)


def destroy_with_backoff(
    stack: E2EStack,
    log: Callable[[str], None],
    deadline: float,
    waits: Sequence[float] = DESTROY_RETRY_WAITS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """destroy, retried after each wait while the retry can start before `deadline` (a clock()
    time). Returns the errors of the attempts that failed: [] when the last one succeeded."""
    errors: list[str] = []
    for attempt, wait in enumerate((0.0, *waits), start=1):
        if wait:
            if clock() + wait >= deadline:
                log(f"e2e: no time left for destroy attempt {attempt} (it would wait {wait:.0f} s)")
                return errors
            log(f"e2e: waiting {wait:.0f} s for AWS to release network interfaces")
            sleep(wait)
        try:
            stack.destroy()
            return []
        except Exception as exc:
            errors.append(f"destroy attempt {attempt}: {type(exc).__name__}: {exc}")
            log(f"e2e: {errors[-1]}")
    return errors


def clean_up(
    stack: E2EStack,
    log: Callable[[str], None] = print,
    *,
    seconds: float = 20 * 60,
    waits: Sequence[float] = DESTROY_RETRY_WAITS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """destroy (retried with backoff within `seconds`), then remove the stack.

    Returns None, or what went wrong. The stack is kept when its destroy failed (its state is
    the only record of what is left) and when an interrupted create left pending operations
    (resources may exist outside the state: `stack rm` would forget them, and so would destroy,
    which is why they are read first).
    """
    deadline = clock() + seconds
    pending = [p for p in stack.pending_operations() if p.kind in ("creating", "importing")]
    for p in pending:
        log(f"e2e: pending {p.kind} of {p.type} {p.urn}: it may exist outside the state")
    errors = destroy_with_backoff(stack, log, deadline, waits, clock, sleep)
    if errors:
        return (
            f"`pulumi destroy` of {stack.name} failed; the stack is kept so that "
            f"`pulumi destroy -s {stack.name}` can finish the job. " + " | ".join(errors)
        )
    if pending:
        listed = "; ".join(f"{p.type} {p.urn}" for p in pending)
        return (
            f"{stack.name} was destroyed but is kept: an interrupted create left {len(pending)} "
            f"pending operation(s), whose resources may exist outside the state ({listed}). "
            "Find them by the stack's tags (Project, Stack) and delete them, then "
            f"`pulumi stack rm {stack.name}`"
        )
    try:
        stack.remove()
    except Exception as exc:
        return f"{stack.name} was destroyed but `pulumi stack rm` failed: {exc}"
    log(f"e2e: {stack.name} destroyed and removed")
    return None


@contextmanager
def cleaned_up(
    stack: E2EStack, log: Callable[[str], None] = print, **cleanup: Any
) -> Iterator[E2EStack]:
    """Run the body, then clean up whatever happened (an interrupt too; `cleanup` goes to
    clean_up).

    A failed cleanup after a failed body is added as a note to the body's exception, which is
    re-raised: the original failure stays the headline. After a passing body, it raises.
    """
    try:
        yield stack
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            # The interrupted CLI has exited (interrupt.py), but one killed outright leaves its
            # lock behind: release it first, as the leftover job does, or destroy meets it.
            stack.cancel()
        problem = clean_up(stack, log, **cleanup)
        if problem:
            exc.add_note(f"and then the cleanup failed: {problem}")
        raise
    problem = clean_up(stack, log, **cleanup)
    if problem:
        raise CleanupFailed(problem)


# --- the Automation API -----------------------------------------------------------------------


class AutomationStack:
    """E2EStack over a `pulumi.automation.Stack` of this project (a local program)."""

    def __init__(self, stack: Any, log: Callable[[str], None] = print) -> None:
        self._stack = stack
        self._project = stack  # the stack in the project directory; _stack may be a copy's
        self._copy: Path | None = None
        self._log = log

    @property
    def name(self) -> str:
        return str(self._stack.name)

    def up(self) -> Update:
        try:
            result = self._stack.up(
                on_output=self._log,
                on_error=self._log,
                color="never",
                policy_packs=[str(POLICY_PACK)],
            )
        except Exception as exc:
            note = deployment_note(str(exc))
            if note:
                exc.add_note(note)
            raise
        return Update(
            outputs={k: v.value for k, v in result.outputs.items()},
            change_summary=result.summary.resource_changes or {},
        )

    def preview(self, refresh: bool = False) -> Preview:
        steps: list[Step] = []

        def on_event(event: Any) -> None:
            pre = event.resource_pre_event
            if pre is not None:
                m = pre.metadata
                steps.append(Step(m.urn, m.type, _op(m.op), tuple(m.diffs or ())))

        result = self._stack.preview(
            on_output=self._log,
            on_error=self._log,
            on_event=on_event,
            color="never",
            diff=True,
            refresh=refresh,
            policy_packs=[str(POLICY_PACK)],
        )
        return Preview(result.change_summary, result.stdout, tuple(steps))

    def set_config(self, key: str, value: str) -> None:
        from pulumi import automation as auto  # noqa: PLC0415 - only where it runs

        self._stack.set_config(key, auto.ConfigValue(value=value), path=True)

    def use_unhealthy_name(self, unhealthy: bool) -> None:
        """The same stack, run from a copy of the project whose name image cannot start (a
        temporary directory), or back from the project directory."""
        from pulumi import automation as auto  # noqa: PLC0415

        if not unhealthy:
            self._stack = self._project
            if self._copy is not None:
                shutil.rmtree(self._copy.parent, ignore_errors=True)
                self._copy = None
            return
        workspace = self._project.workspace
        root = Path(workspace.work_dir)
        settings = sorted(root.glob(f"Pulumi.{self.name.rsplit('/', 1)[-1]}.y*ml"))
        self._copy = unhealthy_copy(
            root, Path(tempfile.mkdtemp(prefix="e2e-")) / "project", settings
        )
        self._stack = auto.select_stack(
            self.name,
            work_dir=str(self._copy),
            opts=auto.LocalWorkspaceOptions(
                pulumi_command=workspace.pulumi_command, env_vars=workspace.env_vars
            ),
        )

    def deployment(self) -> Mapping[str, Any]:
        """The stack's checkpoint as `pulumi stack export` prints it, secrets left encrypted:
        the SDK's export_stack passes --show-secrets, which needs the secrets provider."""
        workspace = self._stack.workspace
        result = workspace.pulumi_command.run(
            ["stack", "export", "--stack", self.name], workspace.work_dir, workspace.env_vars
        )
        return dict(json.loads(result.stdout).get("deployment") or {})

    def pending_operations(self) -> list[PendingOperation]:
        return pending_operations_of(self.deployment())

    def cancel(self) -> None:
        from pulumi import automation as auto  # noqa: PLC0415

        try:
            self._stack.cancel()
        except auto.CommandError as exc:  # no update in progress: nothing to release
            self._log(f"e2e: nothing to cancel ({str(exc).strip().splitlines()[-1:]})")

    def destroy(self) -> None:
        self._stack.destroy(on_output=self._log, on_error=self._log, color="never")

    def remove(self) -> None:
        # Also deletes Pulumi.<stack>.yaml from the project directory.
        self._stack.workspace.remove_stack(self._stack.name)


# The provider's error when a service's deployment did not finish within the wait
# (components/service.py, DEPLOYMENT_WAIT): the ECS waiter's state never became stable.
DEPLOYMENT_TIMEOUT = "timeout while waiting for state to become 'tfSTABLE'"


def deployment_note(error: str) -> str | None:
    """What a failed update's error means, where the provider's words do not say it."""
    if DEPLOYMENT_TIMEOUT not in error:
        return None
    return (
        "an ECS deployment did not finish within its wait (20 minutes): on a stack with "
        "capacity.spotWeight > 0 the likely cause is no Fargate Spot capacity (ECS retries the "
        'Spot tasks and never falls back to FARGATE); its service events say "unable to place '
        'a task" (docs/infrastructure.md, "A deployment that cannot finish")'
    )


def pending_operations_of(deployment: Mapping[str, Any]) -> list[PendingOperation]:
    return [
        PendingOperation(
            kind=str(op.get("type", "")),
            type=str(op.get("resource", {}).get("type", "")),
            urn=str(op.get("resource", {}).get("urn", "")),
        )
        for op in deployment.get("pending_operations") or []
    ]


def secrets_settings_of(deployment: Mapping[str, Any]) -> tuple[str, str] | None:
    """(secrets provider URL, encrypted data key) of a stack whose secrets provider is a cloud
    KMS (`secrets_providers` of its checkpoint), or None (Pulumi Cloud's own, or passphrase)."""
    provider = deployment.get("secrets_providers") or {}
    state = provider.get("state") or {}
    if provider.get("type") != "cloud" or not state.get("url") or not state.get("encryptedkey"):
        return None
    return str(state["url"]), str(state["encryptedkey"])


def workspace_options(
    environ: Mapping[str, str],
    config: Mapping[str, Any] | None,
    short: str,
    command: Any = None,
) -> Any:
    """`command`: the PulumiCommand to run the CLI with (ForwardingPulumiCommand where it runs
    for real; None leaves the SDK's, which looks the CLI up on PATH when used)."""
    from pulumi import automation as auto  # noqa: PLC0415

    return auto.LocalWorkspaceOptions(
        secrets_provider=environ.get(SECRETS_PROVIDER_ENV) or None,
        # Written to Pulumi.<stack>.yaml before `stack init`: nested values stay nested.
        stack_settings={short: auto.StackSettings(config=dict(config))} if config else None,
        pulumi_command=command,
    )


def create_stack(
    name: StackName,
    config: Mapping[str, Any],
    environ: Mapping[str, str],
    root: Path = ROOT,
    command: Any = None,
) -> Any:
    """`pulumi stack init` of a new stack; its config file goes away if that fails."""
    from pulumi import automation as auto  # noqa: PLC0415

    settings = root / f"Pulumi.{name.short}.yaml"
    if settings.exists():
        # Writing the settings would overwrite the config of a stack that is still there.
        raise FileExistsError(f"{settings} exists: another run's stack? (see docs/delivery.md)")
    try:
        return auto.create_stack(
            name.qualified,
            work_dir=str(root),
            opts=workspace_options(environ, config, name.short, command),
        )
    except BaseException as exc:
        settings.unlink(missing_ok=True)
        if isinstance(exc, auto.StackAlreadyExistsError):
            # The name is fixed (the deploy role's scope): an earlier run was killed before
            # its cleanup. The workflow's first job removes such a stack; by hand:
            exc.add_note(
                f"{name.qualified} exists: an earlier run left it behind; "
                f"`{STACK_ENV}={name.short} python -m tests.e2e.lifecycle cleanup` destroys "
                "and removes it (docs/delivery.md)"
            )
        raise


def restore_secrets_settings(stack: Any, deployment: Mapping[str, Any], short: str) -> bool:
    """Give a stack selected without its Pulumi.<stack>.yaml (a fresh checkout) the secrets
    provider and data key its checkpoint records. Without them the CLI falls back to a
    passphrase secrets manager and fails (pulumi/pulumi#17236, #5657). True if written."""
    from pulumi import automation as auto  # noqa: PLC0415

    found = secrets_settings_of(deployment)
    if found is None:
        return False
    try:
        settings = stack.workspace.stack_settings(short)
    except FileNotFoundError:  # the fresh checkout: no Pulumi.<stack>.yaml at all
        settings = auto.StackSettings()
    if settings.secrets_provider and settings.encrypted_key:
        return False
    settings.secrets_provider, settings.encrypted_key = found
    stack.workspace.save_stack_settings(short, settings)
    return True


# Seconds the cleanup may take (E2E_CLEANUP_SECONDS): the workflow gives a step for a cancelled
# run less, since GitHub force-terminates a cancelled run's steps 5 minutes after the cancel.
CLEANUP_SECONDS_ENV = "E2E_CLEANUP_SECONDS"
CLEANUP_SECONDS = 20 * 60


def main(argv: list[str], environ: Mapping[str, str] = os.environ, command: Any = None) -> int:
    """`cleanup`: destroy and remove the stack named by E2E_STACK if it still exists.
    `command`: the PulumiCommand to use (the tests' stand-in CLI); else the one on PATH."""
    if argv != ["cleanup"]:
        print("usage: python -m tests.e2e.lifecycle cleanup   (stack from E2E_STACK)")
        return 2
    if not environ.get(STACK_ENV):
        print(f"e2e cleanup: set {STACK_ENV} to the stack's name")
        return 2
    if command is None and shutil.which("pulumi") is None:
        print("e2e cleanup: the pulumi CLI is not on PATH")
        return 1
    from pulumi import automation as auto  # noqa: PLC0415

    from tests.e2e.interrupt import ForwardingPulumiCommand, terminate_as_interrupt  # noqa: PLC0415

    seconds = float(environ.get(CLEANUP_SECONDS_ENV) or CLEANUP_SECONDS)
    name = stack_name(environ)
    command = command or ForwardingPulumiCommand()
    try:
        stack = auto.select_stack(
            name.qualified,
            work_dir=str(ROOT),
            opts=workspace_options(environ, None, name.short, command),
        )
    except auto.StackNotFoundError:
        print(f"e2e cleanup: no stack {name.qualified}: nothing left behind", flush=True)
        return 0
    if threading_main():
        terminate_as_interrupt()
    e2e = AutomationStack(stack)
    try:
        deployment = e2e.deployment()
    except auto.CommandError as exc:  # then the destroy below says what is wrong
        print(f"e2e cleanup: could not export the stack ({str(exc).strip().splitlines()[-1:]})")
        deployment = {}
    if restore_secrets_settings(stack, deployment, name.short):
        print(f"e2e cleanup: Pulumi.{name.short}.yaml restored from the stack's checkpoint")
    # A run killed mid-update leaves the stack locked (Pulumi Cloud: an update in progress;
    # self-managed: a lock file, which `pulumi cancel` deletes too). Release it first; an error
    # here only means there was no update to cancel.
    try:
        stack.cancel()
    except auto.CommandError as exc:
        print(f"e2e cleanup: nothing cancelled ({str(exc).strip().splitlines()[-1:]})")
    problem = clean_up(e2e, seconds=seconds)
    if problem:
        print(f"e2e cleanup: {problem}")
        return 1
    return 0


def threading_main() -> bool:
    """Signal handlers can be installed from the main thread only."""
    import threading  # noqa: PLC0415

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
