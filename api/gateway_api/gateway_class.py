"""GatewayClass (gateway.networking.k8s.io v1, v1beta1; cluster-scoped): a kind of
Gateway and the controller that implements it; validated as the Gateway API's CRD does.
(The CRD's one CEL rule, that controllerName is immutable, concerns updates: there is
no earlier object to compare with here.)"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from api import checks
from api.gateway_api import common
from api.gateway_api.common import ObjectReference
from api.issues import Issues
from api.model import Spec
from api.resources import GATEWAY_API, KindInfo

__all__ = ["KIND", "GatewayClassSpec", "ParametersReference", "controller_name", "validate"]

# DOMAIN/PATH, such as "istio.io/gateway-controller".
_CONTROLLER = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
)


class ParametersReference(ObjectReference):
    """The implementation's own configuration for the class (a namespace for a
    namespaced kind)."""


class GatewayClassSpec(Spec):
    controller_name: str
    parameters_ref: ParametersReference | None = None
    description: str | None = None


def controller_name(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if (m := checks.max_length(value, 253)) is not None:
        return m
    if not _CONTROLLER.fullmatch(value):
        return f"{value!r} is not a valid controller name (DOMAIN/PATH, such as example.com/gw)"
    return None


def validate(spec: GatewayClassSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    if (m := controller_name(spec.controller_name)) is not None:
        issues.error(m, "controllerName")
    if (m := checks.max_length(spec.description, 64)) is not None:
        issues.error(m, "description")
    if spec.parameters_ref is not None:
        common.check_object_ref(spec.parameters_ref, issues.at("parametersRef"))


KIND = KindInfo(
    kind="GatewayClass",
    group=GATEWAY_API,
    versions=("v1beta1", "v1"),
    plural="gatewayclasses",
    spec_model=GatewayClassSpec,
    validate=validate,
    spec_required=True,
    cluster_scoped=True,
)
