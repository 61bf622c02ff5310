"""The policy pack's entry point: what the Pulumi CLI runs for `--policy-pack policy`.

The CLI starts `python -m pulumi.policy <engine> .` from the project's virtualenv (see
PulumiPolicy.yaml) with this folder as the working directory and first on sys.path, so the
rules module is imported by its own name here; tests and mypy import it as policy.guardrails.
"""

import guardrails  # type: ignore[import-not-found]

guardrails.serve()
