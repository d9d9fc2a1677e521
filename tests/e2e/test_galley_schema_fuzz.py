"""Galley's REST API, fuzzed from its own OpenAPI document (markers: hostile, e2e).

Schemathesis reads /openapi.json from a running Galley and, for every operation,
generates requests from the declared parameters and bodies: ones the schema
allows, and ones that break it. Every answer is checked: never a 5xx, only
statuses the document declares, bodies in the declared shape and content type,
the token demanded where the document says so, schema-breaking input refused.

A schema describes the shape of a document, not Istio's rules, so three in four
schema-valid cases are steered towards meaning: the body's kind and name agree
with the path, a few names recur, and specs are empty (valid for the security
kinds, an error naming a field for the others). That reaches the handlers past
validation: creates, 409s on names already taken, 428s for updates without a
version, deletes.
Galley's RSS is measured before and after, and its log must hold no traceback.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from api.resources import check_document, kinds
from tests.e2e.harness import Mesh
from tests.e2e.test_hostile_grpc import rss_mb

pytestmark = [pytest.mark.e2e, pytest.mark.hostile]

_RSS: dict[str, float] = {}
KINDS = sorted(kinds().values(), key=lambda k: k.kind)


def _documented(base: str) -> set[str]:
    """Every operation the running Galley's /openapi.json documents, as 'METHOD /path'."""
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as resp:
        doc = json.load(resp)
    return {f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops}


# The config API's core: any of these missing from the document is a regression.
CORE = {
    *(f"{m} /apis/{{group}}/{{version}}/{{plural}}" for m in ("GET", "POST")),
    *(f"{m} /apis/{{group}}/{{version}}/{{plural}}/{{name}}" for m in ("GET", "PUT", "DELETE")),
    *(
        f"{m} /apis/{{group}}/{{version}}/namespaces/{{namespace}}/{{plural}}"
        for m in ("GET", "POST")
    ),
    *(
        f"{m} /apis/{{group}}/{{version}}/namespaces/{{namespace}}/{{plural}}/{{name}}"
        for m in ("GET", "PUT", "DELETE")
    ),
    "POST /v1/validate",
    "POST /v1/apply",
}


# Kinds whose empty spec is valid: a steered body of these passes validation.
EMPTY_OK = [
    k
    for k in KINDS
    if check_document(
        {
            "apiVersion": f"{k.group}/{k.versions[-1]}",
            "kind": k.kind,
            "metadata": {"name": "x"},
            "spec": {},
        },
        "probe",
    ).ok
]


@pytest.fixture(scope="module")
def galley(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(Path(tmp_path_factory.mktemp("galley-schema")))
    try:
        m.start_consul()
        m.start_galley()
        _RSS["before"] = rss_mb(m, "galley")
        yield m
    finally:
        m.stop()


@st.composite
def _steered(draw: st.DrawFn, operation: Any, mode: GenerationMode) -> Any:
    case = draw(operation.as_strategy(generation_mode=mode))
    if mode is not GenerationMode.POSITIVE or draw(st.integers(0, 3)) == 0:
        return case
    info = draw(st.sampled_from(EMPTY_OK) | st.sampled_from(KINDS))
    version = draw(st.sampled_from(info.versions))
    name = draw(st.sampled_from(["fuzz-a", "fuzz-b"]))
    where = case.path_parameters
    if where and "plural" in where:
        where.update(group=info.group, version=version, plural=info.plural, namespace="default")
        if "name" in where:
            where["name"] = name
    docs = case.body if isinstance(case.body, list) else [case.body]
    for i, doc in enumerate(docs):
        if isinstance(doc, dict):
            doc.update(apiVersion=f"{info.group}/{version}", kind=info.kind)
            # Documents of one apply need names of their own (a repeat is refused).
            doc["metadata"] = {"name": f"{name}-{i}" if i else name, "namespace": "default"}
            doc["spec"] = {}
    if case.query and draw(st.booleans()):
        case.query.pop("force", None)
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_declared(galley: Mesh, mode: GenerationMode) -> None:
    base = f"http://127.0.0.1:{galley.galley_http}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.label for op in operations} == _documented(base)  # none dropped by the parser
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:

        @given(case=_steered(operation, mode))
        @settings(
            max_examples=60,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_declared(case: Any) -> None:
            response = case.call_and_validate(
                base_url=base,
                headers={"Authorization": f"Bearer {galley.token}"},
                timeout=30,
                # Schema-valid is not Istio-valid (a 422 names the broken field).
                excluded_checks=[checks.positive_data_acceptance],
            )
            seen[(f"{case.method} {case.path}", response.status_code)] += 1

        answers_as_declared()
    print(
        f"\n{mode.value}: "
        + ", ".join(f"{op} {code}: {n}" for (op, code), n in sorted(seen.items()))
    )
    if mode is GenerationMode.POSITIVE:
        # The steering reached past validation on every kind of write.
        reached = {(op.split()[0], code) for op, code in seen}
        for expected in [("POST", 201), ("POST", 409), ("PUT", 428), ("DELETE", 200)]:
            assert expected in reached, (expected, sorted(seen.items()))
        assert ("POST /v1/validate", 200) in seen and ("POST /v1/apply", 200) in seen


def test_schema_declares_every_body_and_answer(galley: Mesh) -> None:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{galley.galley_http}/openapi.json", timeout=10
    ) as resp:
        doc = json.load(resp)
    operations = [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert CORE <= {f"{m.upper()} {p}" for m, p, _ in operations}
    for method, path, op in operations:
        codes = set(op["responses"])
        assert "503" in codes and "401" in codes, (method, path)
        for code, answer in op["responses"].items():
            schema_ref = answer["content"]["application/json"]["schema"]["$ref"]
            assert schema_ref.startswith("#/components/schemas/"), (method, path, code)
        if method in ("post", "put"):
            content = op["requestBody"]["content"]
            assert {"application/json", "application/yaml"} <= set(content), (method, path)
        writes = method != "get" and not path.endswith("/validate")
        assert ("security" in op) == writes, (method, path)


def test_galley_stayed_small_and_clean(galley: Mesh) -> None:
    """Runs after the fuzzing above (file order): memory bounded, no traceback logged."""
    after = rss_mb(galley, "galley")
    print(f"\nGalley RSS {_RSS['before']:.0f} -> {after:.0f} MB over the schema fuzzing")
    assert after - _RSS["before"] < 128
    assert "Traceback" not in (galley.workdir / "logs" / "galley.log").read_text()
