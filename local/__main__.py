"""``python -m local`` (``./dev up``): start the local stack and run until Ctrl-C or SIGTERM.

The first Ctrl-C (or SIGTERM) stops everything in order: every replica is deregistered,
sent SIGTERM and given its drain, then the front, the control endpoint and the DNS
stand-in close. A second Ctrl-C SIGKILLs whatever is still running. Exit status: 0 after
a clean stop, 1 when the stack could not start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from local.config import StackConfig, from_args
from local.runner import StartFailed
from local.stack import Stack, StackError

log = logging.getLogger("local")


def banner(config: StackConfig) -> str:
    control = "python -m local.control"
    if config.control != StackConfig().control:
        control += f" --url http://{config.control}"
    first_name = next(config.name_network.hosts())
    return "\n".join(
        [
            "",
            f"local stack up: {config.name_count} name, {config.hello_count} hello;"
            f" Cloud Map stand-in for '{config.namespace}' on {config.dns} (UDP+TCP)",
            f"  curl {config.front.url}",
            f"  {control} status",
            f"  {control} scale name 5",
            f"  {control} kill name {first_name}",
            f"  {control} dns stop      # and: dns start",
            f"  {control} deploy name --env METRICS_INTERVAL_SECONDS=5 --wait",
            *(
                [f"  {control} zone {config.zone_names[0]} down   # and: zone ... up"]
                if config.zones > 1
                else []
            ),
            f"replica logs: {config.logs}/   Ctrl-C stops everything.",
            "",
        ]
    )


async def run(config: StackConfig) -> int:
    loop = asyncio.get_running_loop()
    stack = Stack(config)
    stopping = asyncio.Event()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info(
                "%s: stopping (replicas drain up to %.0fs); Ctrl-C again to kill them now",
                sig.name,
                config.drain_seconds,
            )
            stopping.set()
        else:
            log.info("%s again: killing every replica", sig.name)
            stack.runner.kill_all()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    starting = asyncio.create_task(stack.start())
    stop_wait = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return 0
        try:
            starting.result()
        except (StackError, StartFailed) as error:
            log.error("local stack cannot start: %s", error)
            return 1
        print(banner(config), flush=True)
        await stop_wait
        return 0
    finally:
        stop_wait.cancel()
        await stack.close()
        # Whatever survived an orderly stop (nothing, normally) does not survive this.
        stack.runner.kill_all()
        log.info("local stack stopped")


def main(argv: Sequence[str]) -> int:
    config = from_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
    )
    # aiohttp logs a line per failed health check at INFO; the runner says what matters.
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
