"""The program on a real AWS account, through Pulumi's Automation API.

Every other infrastructure test runs the program under mocks we wrote; only this one lets
terraform-provider-aws and AWS answer. It creates an ephemeral stack (the dev configuration,
its own name and tags, the region of the environment), runs `up`, requires the seed's answer
from at least two distinct name tasks, requires a second, refreshed `preview` to change nothing
(a perpetual diff appears nowhere else), scales name by one and requires hello to reach the new
task, switches the stack to ECS Service Connect and requires every task again and no
perpetual diff in that mode, deploys a name revision that cannot start and requires `up` to
fail and a refreshed `preview` to still want it (rollback.py), then destroys and removes the
stack whatever happened. The steps: lifecycle.py, tested without AWS in test_lifecycle.py.

Opt-in (``E2E_DEPLOY=1``): it takes about 30 minutes and AWS bills the stack while it lives.
Without the opt-in or a prerequisite it skips, naming what is missing, in one line; opted in,
a missing prerequisite fails. How to run it: docs/delivery.md.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.e2e import lifecycle
from tests.e2e.interrupt import ForwardingPulumiCommand, terminate_as_interrupt


@pytest.fixture(scope="module")
def environ() -> Mapping[str, str]:
    """The environment, once it holds every prerequisite; checked without a network call, so
    pytest's other runs pay nothing for this module."""
    missing = lifecycle.missing_requirements(os.environ, shutil.which, Path.home())
    verdict = lifecycle.skip_or_fail(missing, os.environ)
    if verdict is not None:
        action, reason = verdict
        if action == "fail":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return os.environ


def test_a_real_stack_answers_scales_and_shows_no_perpetual_diff(
    environ: Mapping[str, str],
) -> None:
    region = lifecycle.aws_region(environ)
    assert region is not None
    name = lifecycle.stack_name(environ)
    config = lifecycle.e2e_config(lifecycle.dev_config(), name.short, region)
    # Ctrl-C and SIGTERM (GitHub's runner sends SIGINT, then SIGTERM 7.5 s later) both reach
    # the cleanup below, after the interrupted CLI has cancelled and released the stack's lock.
    terminate_as_interrupt()
    print(f"e2e: creating stack {name.qualified} in {region}", flush=True)
    command = ForwardingPulumiCommand()
    stack = lifecycle.AutomationStack(
        lifecycle.create_stack(name, config, environ, command=command)
    )
    with lifecycle.cleaned_up(stack):
        lifecycle.run_scenario(
            stack,
            initial=lifecycle.initial_name_count(config),
            fetch=lifecycle.http_get,
            budget=lifecycle.Budget(),
        )
