"""Helpers for validation tests: check one document, get its issues as strings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from api.resources import Checked, check_document

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "istio"


def corpus_documents(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(file:index, document) for every corpus document of a kind."""
    found = []
    for path in sorted(CORPUS.rglob("*.yaml")) if CORPUS.exists() else []:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc and doc.get("kind") == kind:
                found.append((f"{path.name}:{i}", doc))
    return found


def check(
    kind: str,
    spec: Any,
    *,
    api_version: str | None = None,
    name: str = "x",
    namespace: str = "default",
    **extra: Any,
) -> Checked:
    from api.resources import kinds

    info = kinds()[kind]
    doc: dict[str, Any] = {
        "apiVersion": api_version or f"{info.group}/{info.versions[-1]}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        **extra,
    }
    if spec is not None:
        doc["spec"] = spec
    return check_document(doc, "test.yaml:0")


def errors(checked: Checked) -> list[str]:
    return [str(i) for i in checked.errors]


def warnings(checked: Checked) -> list[str]:
    return [str(i) for i in checked.warnings]


def other_warnings(checked: Checked) -> list[str]:
    """Warnings besides the "accepted but not applied" ones (api/unsupported.py)."""
    return [w for w in warnings(checked) if "not applied by this mesh" not in w]
