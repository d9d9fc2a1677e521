"""A key written twice in one JSON object is refused with its line and column, as YAML's is."""

from __future__ import annotations

import json

import pytest

from api.documents import DocumentError, parse_json

VS_TEXT = """{
  "apiVersion": "networking.istio.io/v1",
  "kind": "VirtualService",
  "metadata": {"name": "reviews"},
  "spec": {
    "hosts": ["reviews"],
    "hosts": ["ratings"]
  }
}"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VS_TEXT, "line 7, column 5: key 'hosts' appears twice"),
        ('{"kind": "A", "kind": "B"}', "line 1, column 15: key 'kind' appears twice"),
        # Nested: the object that holds the duplicate, wherever it is.
        ('{"a": {"b": [{"c": 1, "d": {"c": 2}, "c": 3}]}}', "line 1, column 38: key 'c'"),
        # A key spelled with escapes is the same key.
        ('{"hosts": 1,\n "\\u0068osts": 2}', "line 2, column 2: key 'hosts' appears twice"),
        # Brackets and quotes inside strings are not structure.
        ('{"k": "{\\"k\\": [", "k": 1}', "line 1, column 20: key 'k' appears twice"),
        # The first duplicate in the text is named, before a later (inner) one.
        ('{"a": 1, "a": {"b": 1, "b": 2}}', "line 1, column 10: key 'a' appears twice"),
    ],
)
def test_duplicate_key_names_its_line_and_column(text: str, expected: str) -> None:
    with pytest.raises(DocumentError) as raised:
        parse_json(text)
    assert str(raised.value).startswith(expected), str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        '[{"a": 1}, {"a": 2}]',  # the same key in sibling objects
        '{"a": {"a": {"a": 1}}}',  # and in nested ones
        '{"a": ["a", "a"], "b": "a"}',  # strings that are values, not keys
    ],
)
def test_the_same_key_in_different_objects_is_fine(text: str) -> None:
    assert parse_json(text) == json.loads(text)
