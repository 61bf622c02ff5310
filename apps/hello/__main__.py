"""``python -m apps.hello``: run the hello service (env: see apps/hello/settings.py)."""

import os
import sys

from apps.common.server import main
from apps.hello.app import run
from apps.hello.settings import Settings

if __name__ == "__main__":
    sys.exit(main("hello", Settings.from_env, run, os.environ))
