"""Helpers for the Gateway API validation tests: build a document of a kind, check it as
Galley does, and look for an error at an exact field path."""

from __future__ import annotations

from typing import Any

import yaml

from api.issues import Issues
from api.resources import GATEWAY_API, Checked, check_document, kind_id, kinds


def doc(kind: str, spec: Any, version: str = "v1", status: Any = None) -> dict[str, Any]:
    """A document of the kind in namespace default (spec: a mapping or YAML text)."""
    if isinstance(spec, str):
        spec = yaml.safe_load(spec)
    out: dict[str, Any] = {
        "apiVersion": f"{GATEWAY_API}/{version}",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default"},
    }
    if spec is not None:
        out["spec"] = spec
    if status is not None:
        out["status"] = status
    return out


def check(kind: str, spec: Any, version: str = "v1", status: Any = None) -> Checked:
    return check_document(doc(kind, spec, version, status), "test.yaml:0")


def errors(checked: Checked) -> list[str]:
    return [str(e) for e in checked.errors]


def assert_ok(checked: Checked) -> None:
    assert checked.ok, errors(checked)


def assert_error(checked: Checked, path: str, fragment: str = "") -> None:
    """An error at exactly `path` whose message holds `fragment`; the document refused."""
    assert not checked.ok
    found = [e.message for e in checked.errors if e.path == path]
    assert found, f"no error at {path}: {errors(checked)}"
    assert any(fragment in m for m in found), f"{path}: {found}"


def validate_as(kind: str, spec: Any, version: str) -> list[str]:
    """The semantic errors of a spec validated as the given apiVersion's version says
    (rules that differ between versions), as "path: message"."""
    info = kinds()[kind_id(kind, GATEWAY_API)]
    if isinstance(spec, str):
        spec = yaml.safe_load(spec)
    model = info.spec_model.model_validate(spec)
    issues = Issues(("spec",))
    info.validate(model, {"name": "x", "namespace": "default", "version": version}, issues)
    return [str(i) for i in issues.errors]
