"""``python -m apps.healthcheck [PATH]``: probe this container's own ``/health``.

For the ECS container health check (``["CMD", "python", "-m", "apps.healthcheck"]``):
slim images have no curl. Exit 0 when ``GET http://127.0.0.1:$PORT/health``
answers 200 within 2 seconds, else 1 with one line on stderr saying why. When
``HOST`` names one address (not 0.0.0.0 or ::), that address is probed instead.

``PORT`` and ``HOST`` are read by the services' own parsers (``apps.common.env``):
a value the service serves on is never one its health check refuses.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping, Sequence

from apps.common import env

TIMEOUT_SECONDS = 2.0
# The services' own defaults (apps/name/app.py, apps/hello/settings.py).
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 3000


def probe(
    host: str, port: int, path: str = "/health", timeout: float = TIMEOUT_SECONDS
) -> str | None:
    """None when healthy, else why not."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "apps.healthcheck"})
        response = connection.getresponse()
        response.read(1024)
    except (OSError, http.client.HTTPException) as exc:
        return f"GET http://{host}:{port}{path} failed: {exc}"
    finally:
        connection.close()
    if response.status != 200:
        return f"GET http://{host}:{port}{path} answered {response.status}"
    return None


def target(environ: Mapping[str, str]) -> tuple[str, int]:
    """The address and port the service listens on; EnvError for a value it would refuse."""
    host = env.text("HOST", DEFAULT_HOST, environ)
    port = env.port("PORT", DEFAULT_PORT, environ)
    return ("127.0.0.1" if host in ("0.0.0.0", "::") else host), port


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    try:
        host, port = target(environ)
    except env.EnvError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    problem = probe(host, port, argv[0] if argv else "/health")
    if problem:
        print(f"healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
