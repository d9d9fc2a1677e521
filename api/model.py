"""Conventions for the Istio resource models.

Every spec model derives from `Spec`: camelCase field names as users write
them in YAML, unknown fields refused, no type coercion ("5" is not 5), and
immutable once parsed (Pilot shares them between pushes). Semantic rules
that Istio checks in code (ranges across fields, durations, regexes, names)
live in each kind's `validate` function, which reports through `Issues`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from api.issues import Issues

__all__ = ["Spec", "report_pydantic"]


class Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=False,
        frozen=True,
        validate_default=False,
    )

    def dump(self) -> dict[str, Any]:
        """Canonical JSON-able form: camelCase, unset fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_MESSAGES: dict[str, Callable[[Any], str]] = {
    "extra_forbidden": lambda e: "unknown field",
    "missing": lambda e: "required field is missing",
    "greater_than_equal": lambda e: f"must be >= {e['ctx']['ge']}",
    "greater_than": lambda e: f"must be > {e['ctx']['gt']}",
    "less_than_equal": lambda e: f"must be <= {e['ctx']['le']}",
    "less_than": lambda e: f"must be < {e['ctx']['lt']}",
    "literal_error": lambda e: f"must be one of {e['ctx']['expected']}, not {e['input']!r}",
    "string_type": lambda e: f"must be a string, not {type(e['input']).__name__}",
    "int_type": lambda e: f"must be an integer, not {type(e['input']).__name__}",
    "float_type": lambda e: f"must be a number, not {type(e['input']).__name__}",
    "bool_type": lambda e: f"must be true or false, not {type(e['input']).__name__}",
    "list_type": lambda e: f"must be a list, not {type(e['input']).__name__}",
    "dict_type": lambda e: f"must be a mapping, not {type(e['input']).__name__}",
    "model_type": lambda e: f"must be a mapping, not {type(e['input']).__name__}",
    "model_attributes_type": lambda e: f"must be a mapping, not {type(e['input']).__name__}",
}


def report_pydantic(err: ValidationError, issues: Issues) -> None:
    """Turn pydantic's errors into Issues at the user's field paths."""
    seen = set()
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # Unions report once per member; keep the first message per path.
        loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
        if loc in seen:
            continue
        seen.add(loc)
        render = _MESSAGES.get(e["type"])
        issues.error(render(e) if render else e["msg"], *loc)
