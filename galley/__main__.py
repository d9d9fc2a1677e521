"""python -m galley: the config REST API (validation + Consul KV storage)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from pydantic import ValidationError

from galley.main import create_app
from galley.settings import GalleySettings


def parse_args(argv: list[str]) -> GalleySettings:
    parser = argparse.ArgumentParser(prog="python -m galley", description=__doc__)
    for name, field in GalleySettings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{field.description} (env GALLEY_{name.upper()})",
        )
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return GalleySettings(**args)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_args(sys.argv[1:] if argv is None else argv)
    except ValidationError as err:
        for e in err.errors():
            print(f"galley: {'.'.join(map(str, e['loc']))}: {e['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
