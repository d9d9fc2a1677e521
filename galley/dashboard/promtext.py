"""Just enough of the Prometheus text format to read Envoy's /stats/prometheus."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

__all__ = ["Sample", "parse"]

Sample = tuple[str, dict[str, str], float]

_LINE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")


def _labels(text: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if m is None:
            return None
        out[m.group(1)] = _UNESCAPE.sub(
            lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(2)
        )
        pos = m.end()
    return out


def parse(text: str, wanted: frozenset[str] | None = None) -> Iterator[Sample]:
    """(name, labels, value) per sample line; comments and unreadable lines are skipped,
    and so are names not in `wanted` (checked before the labels are read)."""
    prefixes = tuple(wanted) if wanted is not None else ("",)
    for line in text.splitlines():
        if not line or line[0] == "#" or not line.startswith(prefixes):
            continue
        m = _LINE.match(line)
        if m is None or (wanted is not None and m.group(1) not in wanted):
            continue
        labels = _labels(m.group(2) or "")
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        if labels is not None and not math.isnan(value):
            yield m.group(1), labels, value
