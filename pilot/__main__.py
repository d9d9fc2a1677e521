"""python -m pilot: serve xDS to Envoy from the Consul catalog."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from api.service_cli import SettingsError, load_settings, setup_logging
from pilot.app import Pilot
from pilot.settings import PilotSettings


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
        settings = load_settings(
            PilotSettings, sys.argv[1:] if argv is None else argv, "python -m pilot", __doc__
        )
    except SettingsError:
        return 2
    setup_logging(settings.log_level)
    try:
        uvloop.run(_serve(settings))
    except OSError as err:
        print(f"pilot: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
