"""python -m pilot: serve xDS to Envoy from the Consul catalog."""

from __future__ import annotations

import asyncio
import gc
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

    async def freeze_when_ready() -> None:
        # The first snapshot's objects live long: keep them out of every later collection.
        await pilot.ready.wait()
        gc.freeze()

    freezer = asyncio.create_task(freeze_when_ready())
    try:
        await pilot.run()
    except asyncio.CancelledError:
        logging.getLogger("pilot").info("pilot stopped")
    finally:
        freezer.cancel()


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(
            PilotSettings, sys.argv[1:] if argv is None else argv, "python -m pilot", __doc__
        )
    except SettingsError:
        return 2
    setup_logging(settings.log_level)
    # Fewer, later collections: a gen-2 pass over a big snapshot in the middle of a
    # push costs tens of milliseconds (see shared/PERFORMANCE.md); freeze what start-up made.
    gc.set_threshold(50_000, 50, 100)
    try:
        uvloop.run(_serve(settings))
    except OSError as err:
        print(f"pilot: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
