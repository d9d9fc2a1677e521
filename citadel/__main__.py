"""python -m citadel: the mesh CA, serving workload certificates over SDS."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from api.service_cli import SettingsError, load_settings, setup_logging
from citadel.app import Citadel
from citadel.ca import CaError
from citadel.sealing import SealError
from citadel.settings import CitadelSettings


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
        settings = load_settings(
            CitadelSettings, sys.argv[1:] if argv is None else argv, "python -m citadel", __doc__
        )
    except SettingsError:
        return 2
    setup_logging(settings.log_level)
    try:
        uvloop.run(_serve(settings))
    except (OSError, CaError, SealError) as err:
        print(f"citadel: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
