"""ReferenceGrant (gateway.networking.k8s.io v1beta1, v1): lets objects of the listed
kinds in other namespaces refer to objects of this namespace (a route's backend, a
Gateway's certificate); validated as the Gateway API's CRD does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from api import checks
from api.gateway_api import common
from api.issues import Issues
from api.model import Spec
from api.resources import GATEWAY_API, KindInfo

__all__ = ["KIND", "ReferenceGrantFrom", "ReferenceGrantSpec", "ReferenceGrantTo", "validate"]


class ReferenceGrantFrom(Spec):
    group: str
    kind: str
    namespace: str


class ReferenceGrantTo(Spec):
    group: str
    kind: str
    name: str | None = None  # any object of the kind when unset


class ReferenceGrantSpec(Spec):
    from_: list[ReferenceGrantFrom] = Field(alias="from")
    to: list[ReferenceGrantTo]


def _check_size(values: Sequence[Any], issues: Issues, field: str) -> None:
    if (m := checks.min_items(values, 1) or checks.max_items(values, 16)) is not None:
        issues.error(m, field)


def validate(spec: ReferenceGrantSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    _check_size(spec.from_, issues, "from")
    for i, source in enumerate(spec.from_):
        for field, value, check in (
            ("group", source.group, common.group_name),
            ("kind", source.kind, common.kind_name),
            ("namespace", source.namespace, common.namespace_name),
        ):
            if (m := check(value)) is not None:
                issues.error(m, "from", i, field)
    _check_size(spec.to, issues, "to")
    for i, target in enumerate(spec.to):
        for field, name, check in (
            ("group", target.group, common.group_name),
            ("kind", target.kind, common.kind_name),
            ("name", target.name, common.object_name),
        ):
            if name is not None and (m := check(name)) is not None:
                issues.error(m, "to", i, field)


KIND = KindInfo(
    kind="ReferenceGrant",
    group=GATEWAY_API,
    versions=("v1beta1", "v1"),
    plural="referencegrants",
    spec_model=ReferenceGrantSpec,
    validate=validate,
    spec_required=True,
)
