"""Validation results: every problem names its field path.

An `Issue` is an error (the object is refused) or a warning (accepted, but
the user should know). Paths are written as users read them:
``spec.http[0].route[1].weight``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Issue", "Issues", "Severity", "join_path"]


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


def join_path(parts: Iterable[str | int]) -> str:
    """('spec', 'http', 0, 'route') -> 'spec.http[0].route'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = part
    return out


@dataclass(frozen=True, slots=True)
class Issue:
    path: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(slots=True)
class Issues:
    """Collects issues; `at(...)` gives a collector rooted deeper in the document."""

    prefix: tuple[str | int, ...] = ()
    items: list[Issue] = field(default_factory=list)

    def at(self, *parts: str | int) -> Issues:
        return Issues(self.prefix + parts, self.items)  # shares the list

    def error(self, message: str, *parts: str | int) -> None:
        self.items.append(Issue(join_path(self.prefix + parts), message, Severity.ERROR))

    def warn(self, message: str, *parts: str | int) -> None:
        self.items.append(Issue(join_path(self.prefix + parts), message, Severity.WARNING))

    @property
    def errors(self) -> Sequence[Issue]:
        return [i for i in self.items if i.severity is Severity.ERROR]

    @property
    def warnings(self) -> Sequence[Issue]:
        return [i for i in self.items if i.severity is Severity.WARNING]
