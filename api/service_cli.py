"""The command line every service shares: flags from its settings object, one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

__all__ = ["SettingsError", "load_settings", "setup_logging"]

S = TypeVar("S", bound=BaseSettings)


class SettingsError(Exception):
    """Bad flags or environment; already reported on stderr."""


def load_settings(cls: type[S], argv: list[str], prog: str, doc: str | None) -> S:
    """One `--flag` per settings field (env vars work too, with the settings' prefix)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    for name, field in cls.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{field.description} (env {prefix}{name.upper()}, default {field.default})",
        )
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        return cls(**args)
    except ValidationError as err:
        name = prog.split()[-1]
        for e in err.errors():
            print(f"{name}: {'.'.join(map(str, e['loc']))}: {e['msg']}", file=sys.stderr)
        raise SettingsError(str(err)) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
