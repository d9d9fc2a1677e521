"""python -m citadel: the mesh CA, serving workload certificates over SDS."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop
from pydantic import ValidationError

from citadel.app import Citadel
from citadel.ca import CaError
from citadel.settings import CitadelSettings


def parse_args(argv: list[str]) -> CitadelSettings:
    parser = argparse.ArgumentParser(prog="python -m citadel", description=__doc__)
    for name, field in CitadelSettings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{field.description} (env CITADEL_{name.upper()})",
        )
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return CitadelSettings(**args)


async def _serve(settings: CitadelSettings) -> None:
    citadel = Citadel(settings)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    try:
        await citadel.run()
    except asyncio.CancelledError:
        logging.getLogger("citadel").info("citadel stopped")


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_args(sys.argv[1:] if argv is None else argv)
    except ValidationError as err:
        for e in err.errors():
            print(f"citadel: {'.'.join(map(str, e['loc']))}: {e['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        uvloop.run(_serve(settings))
    except (OSError, CaError) as err:
        print(f"citadel: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
