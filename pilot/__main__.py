"""python -m pilot: serve xDS to Envoy from the Consul catalog."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop
from pydantic import ValidationError

from pilot.app import Pilot
from pilot.settings import PilotSettings


def parse_args(argv: list[str]) -> PilotSettings:
    parser = argparse.ArgumentParser(prog="python -m pilot", description=__doc__)
    for name, field in PilotSettings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{field.description} (env PILOT_{name.upper()}, default {field.default})",
        )
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return PilotSettings(**args)


async def _serve(settings: PilotSettings) -> None:
    pilot = Pilot(settings)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    try:
        await pilot.run()
    except asyncio.CancelledError:
        logging.getLogger("pilot").info("pilot stopped")


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_args(sys.argv[1:] if argv is None else argv)
    except ValidationError as err:
        for e in err.errors():
            print(f"pilot: {'.'.join(map(str, e['loc']))}: {e['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        uvloop.run(_serve(settings))
    except OSError as err:
        print(f"pilot: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
