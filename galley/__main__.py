"""python -m galley: the config REST API (validation + Consul KV storage)."""

from __future__ import annotations

import sys

import uvicorn

from api.service_cli import SettingsError, load_settings, setup_logging
from galley.main import create_app
from galley.settings import GalleySettings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(
            GalleySettings, sys.argv[1:] if argv is None else argv, "python -m galley", __doc__
        )
    except SettingsError:
        return 2
    setup_logging(settings.log_level)
    host, _, port = settings.http_addr.rpartition(":")
    try:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=int(port),
            log_level="warning",
            loop="uvloop",
            access_log=False,
            lifespan="on",
        )
    except OSError as err:
        print(f"galley: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
