"""Untrusted text to documents, bounded: the one place YAML and JSON are parsed.

Galley's REST API, `meshctl validate` and the store all read config through
here, so no input can nest deeper than `MAX_DEPTH` or expand to more than
`MAX_NODES` values (a YAML "billion laughs" of a few hundred bytes expands
to 10^9 nodes through aliases). YAML is checked on its event stream before
any Python object is built: each alias counts the full size of what it
repeats, so the bound holds whatever the nesting of anchors.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import yaml

from api.issues import join_path

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "BadValue",
    "BeyondBounds",
    "DocumentError",
    "NotFinite",
    "NotText",
    "check_bounds",
    "parse_json",
    "parse_yaml",
]

MAX_DEPTH = 64  # Istio config nests about 12 levels deep
MAX_NODES = 200_000  # values after alias expansion; a 1 MiB body of real config has ~50,000


class DocumentError(ValueError):
    """The text is not a document this API accepts (syntax, depth or size)."""


class BeyondBounds(DocumentError):
    """Well-formed, but nested too deep or expanding to too many values."""


def _too_deep() -> BeyondBounds:
    return BeyondBounds(f"nested deeper than {MAX_DEPTH} levels")


def _too_big() -> BeyondBounds:
    return BeyondBounds(f"more than {MAX_NODES} values (aliases count what they repeat)")


def _scan_yaml(text: str) -> None:
    """Depth and expanded size from the event stream, before anything is constructed."""
    sizes: dict[str, int] = {}  # anchor -> values its node holds
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, total before it) per collection
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in (a for a, _ in open_nodes):
                raise BeyondBounds(f"alias *{event.anchor} refers to a node that contains it")
            total += sizes.get(event.anchor or "", 1)
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append((event.anchor, total))
            total += 1
            if len(open_nodes) > MAX_DEPTH:
                raise _too_deep()
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = open_nodes.pop()
            if anchor:
                sizes[anchor] = total - before
        if total > MAX_NODES:
            raise _too_big()


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key written twice in one mapping (as Istio's strict
    YAML does) instead of keeping the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue  # `<<` merges may be overridden by the mapping's own keys
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise DocumentError(
                    f"line {key_node.start_mark.line + 1}: key {key_node.value!r} appears twice"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> list[Any]:
    """Every document in a YAML stream (empty ones left out)."""
    try:
        _scan_yaml(text)
        return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DocumentError(f"not valid YAML{at}: {problem}") from err
    except RecursionError as err:  # a bound above should have caught it first
        raise _too_deep() from err


def _json_depth_ok(text: str) -> None:
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep()
        elif ch in "]}":
            depth -= 1


class _DuplicateKey(DocumentError):
    """Raised by the object hook, which sees keys but not where they are written."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # linear: an object of 100,000 keys costs no more than its size
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"key {key!r} appears twice in one object")
            seen.add(key)
    return out


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]')


def _where_duplicate(text: str) -> str | None:
    """Where the first key written twice in one object is, as "line L, column C: key K ...".

    Run only once the hook has found a duplicate, so valid bodies never pay for it; the
    text up to the object the hook refused parsed, so its strings and brackets are sound.
    """
    objects: list[set[str] | None] = []  # per open bracket: its keys so far (None: an array)
    expect_key = False
    for token in _JSON_TOKEN.finditer(text):
        lexeme = token.group()
        if lexeme == "{" or lexeme == "[":
            objects.append(set() if lexeme == "{" else None)
            expect_key = lexeme == "{"
        elif lexeme == "}" or lexeme == "]":
            if objects:
                objects.pop()
            expect_key = False
        elif lexeme == ",":
            expect_key = bool(objects) and objects[-1] is not None
        elif lexeme == ":":
            expect_key = False
        elif expect_key and objects and (keys := objects[-1]) is not None:
            expect_key = False
            key = json.loads(lexeme)  # escapes decoded: "\u0061" is the key "a"
            if key in keys:
                at = token.start()
                line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
                return f"line {line}, column {column}: key {key!r} appears twice"
            keys.add(key)
    return None


class BadValue(DocumentError):
    """A value no config may hold, found at `path` (REASON says why)."""

    REASON = ""

    def __init__(self, path: tuple[str | int, ...]) -> None:
        super().__init__(f"{join_path(path)}: {self.REASON}")
        self.path = path


class NotFinite(BadValue):
    """NaN or an infinity (JSON's non-standard constants, YAML's .nan/.inf)."""

    REASON = "NaN and infinities are not numbers a config may hold"


class NotText(BadValue):
    """A string with a lone UTF-16 surrogate (a JSON "\\ud800" escape makes one): no
    UTF-8, so neither Consul's JSON nor Envoy's protobuf can carry it."""

    REASON = "not valid Unicode text (a lone surrogate code point)"


def _not_finite(item: Any) -> bool:
    return isinstance(item, float) and not math.isfinite(item)


def _not_text(item: Any) -> bool:
    if not isinstance(item, str):
        return False
    try:
        item.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _path_to(value: Any, bad: Callable[[Any], bool]) -> tuple[str | int, ...]:
    """Where the first value (or mapping key) that is `bad` is (depth is already bounded)."""
    if bad(value):
        return ()
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if bad(key):
            return (key,)
        if isinstance(item, (dict, list)) or bad(item):
            try:
                return (key, *_path_to(item, bad))
            except LookupError:
                continue
    raise LookupError


def parse_json(text: str) -> Any:
    try:
        _json_depth_ok(text)
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        raise DocumentError(_where_duplicate(text) or str(err)) from None
    except ValueError as err:
        if isinstance(err, DocumentError):
            raise
        raise DocumentError(f"not valid JSON: {err}") from err
    except RecursionError as err:
        raise _too_deep() from err
    check_bounds(value)
    return value


def check_bounds(value: Any) -> None:
    """Depth and size of an already-built value (a document handed over as objects),
    and no NaN, infinity or unencodable string in it (BadValue says where)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            raise _too_deep()
        if seen > MAX_NODES:
            raise _too_big()
        if isinstance(item, dict):
            if any(_not_text(k) for k in item):
                raise NotText(_path_to(value, _not_text))
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif _not_finite(item):
            raise NotFinite(_path_to(value, _not_finite))
        elif _not_text(item):
            raise NotText(_path_to(value, _not_text))
