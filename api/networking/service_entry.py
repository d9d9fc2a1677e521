"""ServiceEntry: PLACEHOLDER being written (refuses every field until its model lands)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.issues import Issues
from api.model import Spec
from api.resources import NETWORKING, KindInfo


class PendingSpec(Spec):
    pass


def validate(spec: PendingSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    issues.error("ServiceEntry validation is not implemented yet")


KIND = KindInfo(
    kind="ServiceEntry",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="serviceentries",
    spec_model=PendingSpec,
    validate=validate,
)
