"""``python -m apps.name``: run the name service (env: HOST, PORT, DRAIN_SECONDS)."""

import os
import sys

from apps.common.server import main
from apps.name.app import Settings, run

if __name__ == "__main__":
    sys.exit(main("name", Settings.from_env, run, os.environ))
