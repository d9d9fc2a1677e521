"""RequestAuthentication: PLACEHOLDER being written (refuses every field until its model lands)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.issues import Issues
from api.model import Spec
from api.resources import SECURITY, KindInfo


class PendingSpec(Spec):
    pass


def validate(spec: PendingSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    issues.error("RequestAuthentication validation is not implemented yet")


KIND = KindInfo(
    kind="RequestAuthentication",
    group=SECURITY,
    versions=("v1beta1", "v1"),
    plural="requestauthentications",
    spec_model=PendingSpec,
    validate=validate,
)
