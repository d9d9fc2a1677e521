"""Config resources: the kinds we accept, and turning YAML into checked resources.

`KindInfo` describes one kind (group, served versions, spec model, semantic
validation). `check_text` reads multi-document YAML and returns, for every
document, either a `Resource` or the issues that refuse it, each naming the
document (``file:index``) and the field path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from api.checks import is_k8s_label, is_k8s_name
from api.documents import BadValue, DocumentError, check_bounds, parse_yaml
from api.issues import Issue, Issues, Severity
from api.model import Spec, report_pydantic
from api.unsupported import not_applied

__all__ = ["Checked", "KindInfo", "Resource", "check_document", "check_text", "kinds"]

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
TELEMETRY = "telemetry.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"
_ISTIO_GROUPS = frozenset({NETWORKING, SECURITY, TELEMETRY})
_METADATA_FIELDS = frozenset(
    {
        "name",
        "namespace",
        "labels",
        "annotations",
        "resourceVersion",
        "generation",
        "uid",
        "creationTimestamp",
        "managedFields",
        "finalizers",
        "ownerReferences",
        "generateName",
    }
)
_REJECTED_ANNOTATIONS = frozenset(
    {
        "istio.io/alwaysReject",
        "internal.istio.io/parents",
        "internal.istio.io/parent-namespace",
    }
)


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str
    spec_model: type[Spec]
    # Semantic checks: spec, metadata (name, namespace, labels, annotations), issues rooted at spec.
    validate: Callable[[Any, Mapping[str, Any], Issues], None]
    spec_required: bool = False
    cluster_scoped: bool = False  # no namespace (GatewayClass)

    @property
    def id(self) -> str:
        """How the mesh names the kind: an Istio kind by its name, any other by name and
        group (the Gateway API's ``Gateway.gateway.networking.k8s.io`` is not Istio's
        ``Gateway``)."""
        return kind_id(self.kind, self.group)


def kind_id(kind: str, group: str) -> str:
    return kind if group in _ISTIO_GROUPS else f"{kind}.{group}"


S = TypeVar("S", bound=Spec)


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    group: str
    version: str
    name: str
    namespace: str
    spec: Spec
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str | None = None
    # When it was first stored (Consul's CreateIndex; 0: not stored). Conflicts go to the oldest.
    created: int = 0

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def kind_id(self) -> str:
        return kind_id(self.kind, self.group)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind_id, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """KIND/NAMESPACE/NAME (KIND/NAME for a cluster-scoped kind)."""
        if not self.namespace:
            return f"{self.kind_id}/{self.name}"
        return f"{self.kind_id}/{self.namespace}/{self.name}"

    def to_dict(self, with_version: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.namespace:
            meta["namespace"] = self.namespace
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        if with_version and self.resource_version is not None:
            meta["resourceVersion"] = self.resource_version
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": meta,
            "spec": self.spec.dump(),
        }

    def spec_as(self, model: type[S]) -> S:
        """The spec as its kind's model (a wrong model is a bug, not bad input)."""
        if not isinstance(self.spec, model):
            raise TypeError(f"{self.ref}: spec is {type(self.spec).__name__}, not {model.__name__}")
        return self.spec

    def canonical_json(self) -> str:
        """What is stored: sorted keys, no whitespace, no resourceVersion."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


@dataclass(slots=True)
class Checked:
    where: str  # "file.yaml:0" or "VirtualService/default/reviews"
    resource: Resource | None
    issues: list[Issue]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return self.resource is not None and not self.errors


_KINDS: dict[str, KindInfo] | None = None


def kinds() -> dict[str, KindInfo]:
    """Every kind we accept, by kind name (loaded on first use, not at import)."""
    global _KINDS
    if _KINDS is None:
        from api.gateway_api import gateway as k8s_gateway
        from api.gateway_api import (
            gateway_class,
            grpc_route,
            http_route,
            reference_grant,
            tcp_route,
            tls_route,
        )
        from api.networking import (
            destination_rule,
            gateway,
            service_entry,
            sidecar,
            virtual_service,
            workload_entry,
        )
        from api.security import authorization_policy, peer_authentication, request_authentication
        from api.telemetry import telemetry

        modules = (
            virtual_service,
            destination_rule,
            gateway,
            service_entry,
            sidecar,
            peer_authentication,
            authorization_policy,
            request_authentication,
            telemetry,
            workload_entry,
            gateway_class,
            k8s_gateway,
            http_route,
            grpc_route,
            tcp_route,
            tls_route,
            reference_grant,
        )
        _KINDS = {m.KIND.id: m.KIND for m in modules}
        _KINDS[workload_entry.GROUP_KIND.id] = workload_entry.GROUP_KIND
    return _KINDS


def _kind_for(kind: str, group: str) -> KindInfo | None:
    """The kind a document names: by kind and group; for a group we do not serve, the
    kind of that name (so the error is about the apiVersion), Istio's first."""
    found = kinds().get(kind_id(kind, group))
    if found is not None:
        return found
    named = [k for k in kinds().values() if k.kind == kind]
    return min(named, key=lambda k: k.group not in _ISTIO_GROUPS) if named else None


def kind_by_plural(plural: str, group: str | None = None) -> KindInfo | None:
    """The kind a REST path names (`gateways` alone: Istio's)."""
    plural = plural.lower()
    return next(
        (
            k
            for k in sorted(kinds().values(), key=lambda k: k.group not in _ISTIO_GROUPS)
            if k.plural == plural and group in (None, k.group)
        ),
        None,
    )


# Istio kinds refused on purpose (a choice, not a typo), with why.
NOT_SUPPORTED_KINDS = {
    "EnvoyFilter": "raw Envoy patches would bypass validation and the fail-closed rules",
    "WasmPlugin": "no Wasm runtime is configured in the sidecars",
    "ProxyConfig": "proxy settings come from `meshctl bootstrap`",
}


def valid_name(value: str) -> bool:
    """A resource name: a lower-case DNS-1123 subdomain, matched in full."""
    return is_k8s_name(value)


def valid_namespace(value: str) -> bool:
    """A namespace: a DNS-1123 label, matched in full."""
    return is_k8s_label(value)


def _metadata(
    meta: Any, issues: Issues, default_namespace: str
) -> tuple[str, str, dict[str, str], dict[str, str], str | None]:
    if not isinstance(meta, dict):
        issues.error("must be a mapping with at least a name", "metadata")
        return "", default_namespace, {}, {}, None
    for key in meta:
        if key not in _METADATA_FIELDS:
            issues.error("unknown field", "metadata", key)
    name = meta.get("name")
    if not isinstance(name, str) or not is_k8s_name(name):
        issues.error("must be a lower-case DNS-1123 name (a-z, 0-9, '-', '.')", "metadata", "name")
        name = ""
    namespace = meta.get("namespace", default_namespace)
    if not isinstance(namespace, str) or not is_k8s_label(namespace):
        issues.error("must be a DNS-1123 label", "metadata", "namespace")
        namespace = default_namespace
    result_maps: list[dict[str, str]] = []
    for key in ("labels", "annotations"):
        value = meta.get(key) or {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            issues.error("must be a mapping of strings to strings", "metadata", key)
            value = {}
        result_maps.append(value)
    for key in result_maps[1]:
        if key in _REJECTED_ANNOTATIONS:
            issues.error(
                "reserved annotation; must not be set by users", "metadata", "annotations", key
            )
    version = meta.get("resourceVersion")
    return (
        name,
        namespace,
        result_maps[0],
        result_maps[1],
        str(version) if version is not None else None,
    )


def _out_of_bounds(doc: Any, issues: Issues) -> bool:
    try:
        check_bounds(doc)
    except BadValue as err:
        issues.error(err.REASON, *err.path)
    except DocumentError as err:
        issues.error(str(err))
    else:
        return False
    return True


def _document_kind(doc: Mapping[str, Any], issues: Issues) -> tuple[KindInfo, str] | None:
    """The kind and version a document names (None: a kind we do not serve, reported)."""
    api_version, kind_name = doc.get("apiVersion"), doc.get("kind")
    group, _, version = api_version.partition("/") if isinstance(api_version, str) else ("", "", "")
    info = _kind_for(kind_name, group) if isinstance(kind_name, str) else None
    if info is None:
        if isinstance(kind_name, str) and kind_name in NOT_SUPPORTED_KINDS:
            issues.error(
                f"{kind_name} is an Istio kind this mesh does not support: "
                f"{NOT_SUPPORTED_KINDS[kind_name]}",
                "kind",
            )
            return None
        known = ", ".join(sorted({k.kind for k in kinds().values()}))
        issues.error(f"unknown kind {kind_name!r} (one of {known})", "kind")
        return None
    if group != info.group or version not in info.versions:
        served = ", ".join(
            f"{k.group}/{v}" for k in kinds().values() if k.kind == info.kind for v in k.versions
        )
        issues.error(f"{info.kind} is served as {served}, not {api_version!r}", "apiVersion")
    return info, version


def check_document(doc: Any, where: str, default_namespace: str = "default") -> Checked:
    """Validate one parsed YAML/JSON document."""
    issues = Issues()
    if _out_of_bounds(doc, issues):
        return Checked(where, None, issues.items)
    try:
        # As Kubernetes stores it: JSON, so `80:` map keys become "80".
        doc = json.loads(json.dumps(doc, default=str))
    except (TypeError, ValueError) as err:
        issues.error(f"cannot be represented as JSON: {err}")
        return Checked(where, None, issues.items)
    if not isinstance(doc, dict):
        issues.error(f"a resource must be a mapping, not {type(doc).__name__}")
        return Checked(where, None, issues.items)
    found = _document_kind(doc, issues)
    if found is None:
        return Checked(where, None, issues.items)
    info, version = found
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            issues.error("unknown field", key)
    name, namespace, labels, annotations, rv = _metadata(
        doc.get("metadata"), issues, default_namespace
    )
    if info.cluster_scoped:
        namespace = ""  # as Kubernetes does, a namespace given for such a kind is dropped
    if name:
        ref = f"{info.id}/{namespace}/{name}" if namespace else f"{info.id}/{name}"
        where = f"{where} ({ref})" if ":" in where else where
    spec_raw = doc.get("spec")
    if spec_raw is None:
        if info.spec_required:
            issues.error("required field is missing", "spec")
            return Checked(where, None, issues.items)
        spec_raw = {}
    try:
        spec = info.spec_model.model_validate(spec_raw)
    except ValidationError as err:
        report_pydantic(err, issues.at("spec"))
        return Checked(where, None, issues.items)
    if "istio.io/dry-run" in annotations and info.kind != "AuthorizationPolicy":
        issues.error(
            "the dry-run annotation is only supported on AuthorizationPolicy",
            "metadata",
            "annotations",
            "istio.io/dry-run",
        )
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": annotations,
        "version": version,  # some Gateway API rules differ by version
    }
    info.validate(spec, meta, issues.at("spec"))
    for at, message in not_applied(info.id, spec.dump()):
        issues.warn(message, "spec", *at)
    resource = Resource(
        info.kind,
        info.group,
        version or info.versions[-1],
        name,
        namespace,
        spec,
        labels,
        annotations,
        rv,
    )
    return Checked(where, resource, issues.items)


def load_documents(text: str, source: str) -> list[tuple[str, Any]] | Checked:
    """(where, document) for each non-empty YAML document, or one Checked with the error
    (syntax, or past the bounds of api.documents)."""
    try:
        docs = parse_yaml(text)
    except DocumentError as err:
        return Checked(source, None, [Issue("", str(err))])
    return [(f"{source}:{i}", d) for i, d in enumerate(docs)]


def check_text(text: str, source: str, default_namespace: str = "default") -> list[Checked]:
    loaded = load_documents(text, source)
    if isinstance(loaded, Checked):
        return [loaded]
    return [check_document(doc, where, default_namespace) for where, doc in loaded]
