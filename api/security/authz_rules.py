"""AuthorizationPolicy rules: who (`from`), what (`to`) and `when`, with their checks.

Split from authorization_policy.py so the policy module stays about scope and
actions. Every check reports at the user's path, e.g.
``spec.rules[0].from[1].source.principals[0]``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field

from api import checks
from api.issues import Issues
from api.model import Spec

__all__ = [
    "OPERATION_ATTRIBUTES",
    "SOURCE_ATTRIBUTES",
    "Attribute",
    "Condition",
    "Match",
    "Operation",
    "Rule",
    "RuleFrom",
    "RuleTo",
    "Source",
    "check_rule",
    "only_http_attributes",
    "path_template",
    "service_account",
    "trust_domain",
    "when_attribute",
]


class Source(Spec):
    principals: list[str] | None = None
    not_principals: list[str] | None = None
    request_principals: list[str] | None = None
    not_request_principals: list[str] | None = None
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = None
    service_accounts: list[str] | None = None
    not_service_accounts: list[str] | None = None
    ip_blocks: list[str] | None = None
    not_ip_blocks: list[str] | None = None
    remote_ip_blocks: list[str] | None = None
    not_remote_ip_blocks: list[str] | None = None
    trust_domains: list[str] | None = None
    not_trust_domains: list[str] | None = None


class Operation(Spec):
    hosts: list[str] | None = None
    not_hosts: list[str] | None = None
    ports: list[str] | None = None
    not_ports: list[str] | None = None
    methods: list[str] | None = None
    not_methods: list[str] | None = None
    paths: list[str] | None = None
    not_paths: list[str] | None = None


class RuleFrom(Spec):
    source: Source | None = None


class RuleTo(Spec):
    operation: Operation | None = None


class Condition(Spec):
    key: str | None = None
    values: list[str] | None = None
    not_values: list[str] | None = None


class Rule(Spec):
    # `from` is a Python keyword; the explicit alias wins over the camelCase generator.
    from_: list[RuleFrom | None] | None = Field(default=None, alias="from")
    to: list[RuleTo | None] | None = None
    when: list[Condition | None] | None = None


# ---- value checks: each returns an error message or None --------------------

_PORT = re.compile(r"[0-9]+")
# Characters Envoy accepts in a literal segment of a path template (RFC 3986 pchar).
_PATH_LITERAL = re.compile(r"[A-Za-z0-9\-._~%!$&'()+,;:@=]+")
_MAX_SERVICE_ACCOUNTS = 16
_MAX_SERVICE_ACCOUNT_LEN = 320


def port_value(value: str) -> str | None:
    if not _PORT.fullmatch(value) or int(value) > 65535:
        return f"port {value!r} must be a decimal number in 0..65535"
    return None


def service_account(value: str) -> str | None:
    if len(value) > _MAX_SERVICE_ACCOUNT_LEN:
        return f"service account is longer than {_MAX_SERVICE_ACCOUNT_LEN} characters"
    if "*" in value:
        return f"service account {value!r}: wildcards are not supported"
    parts = value.split("/")
    if len(parts) > 2 or not all(parts):
        return f"service account {value!r} must be 'sa' or 'namespace/sa'"
    return None


def trust_domain(value: str) -> str | None:
    if "/" in value:
        return f"trust domain {value!r} must not contain '/'"
    stars = value.count("*")
    if stars > 1 or (stars == 1 and value != "*" and "*" in value[1:-1]):
        return f"trust domain {value!r}: at most one '*', only at the start or the end"
    return None


def path_template(value: str) -> str | None:
    """`{*}` is one segment, `{**}` the rest; `{**}` is the last template; no other braces."""
    templated = "{*}" in value or "{**}" in value
    seen_rest = False
    for segment in value.strip("/").split("/"):
        if segment in ("{*}", "{**}"):
            if seen_rest:
                return f"path {value!r}: {{**}} must be the last template in the path"
            seen_rest = segment == "{**}"
            continue
        if "{" in segment or "}" in segment:
            return f"path {value!r}: '{{' and '}}' are only allowed as {{*}} or {{**}}"
        if templated and not _PATH_LITERAL.fullmatch(segment):
            return f"path {value!r}: segment {segment!r} has characters not allowed in a URI path"
    return None


# ---- the attribute table: what each accepted attribute matches --------------
#
# Validation accepts an attribute only if it is in this table, and Pilot's
# translator has a builder for every `Match` (checked when it is imported), so
# nothing can be accepted and then silently dropped from a rule.


class Match(enum.Enum):
    """What an attribute compares, one Envoy RBAC matcher each."""

    PRINCIPAL = "peer identity (Istio principal form)"
    NAMESPACE = "peer namespace"
    SERVICE_ACCOUNT = "peer service account"
    TRUST_DOMAIN = "peer trust domain"
    SOURCE_IP = "peer address"
    REMOTE_IP = "original client address"
    REQUEST_PRINCIPAL = "JWT issuer/subject"
    AUDIENCE = "JWT audience"
    PRESENTER = "JWT authorized presenter"
    CLAIM = "JWT claim"
    HEADER = "request header"
    METHOD = "request method"
    PATH = "request path"
    HOST = "request authority"
    PORT = "destination port"
    DESTINATION_IP = "destination address"
    SNI = "TLS server name"
    FILTER_METADATA = "dynamic metadata of an Envoy filter"

    @property
    def on_principal(self) -> bool:
        """Matched on who calls (RBAC principal) rather than on what is called."""
        return self not in _PERMISSION_MATCHES

    @property
    def http_only(self) -> bool:
        return self in _HTTP_MATCHES


_PERMISSION_MATCHES = frozenset(
    {
        Match.METHOD,
        Match.PATH,
        Match.HOST,
        Match.PORT,
        Match.DESTINATION_IP,
        Match.SNI,
        Match.FILTER_METADATA,
    }
)
_HTTP_MATCHES = frozenset(
    {
        Match.REQUEST_PRINCIPAL,
        Match.AUDIENCE,
        Match.PRESENTER,
        Match.CLAIM,
        Match.HEADER,
        Match.METHOD,
        Match.PATH,
        Match.HOST,
    }
)


@dataclass(frozen=True, slots=True)
class Attribute:
    match: Match
    check: Callable[[str], str | None] | None = None  # a value check, if values have a form
    custom: bool = True  # allowed with the CUSTOM action


# `from.source` fields and `to.operation` fields, by model field name (the
# not_ forms share their positive form's entry).
SOURCE_ATTRIBUTES: dict[str, Attribute] = {
    "principals": Attribute(Match.PRINCIPAL, custom=False),
    "request_principals": Attribute(Match.REQUEST_PRINCIPAL, custom=False),
    "namespaces": Attribute(Match.NAMESPACE, custom=False),
    "service_accounts": Attribute(Match.SERVICE_ACCOUNT, service_account, custom=False),
    "trust_domains": Attribute(Match.TRUST_DOMAIN, trust_domain, custom=False),
    "ip_blocks": Attribute(Match.SOURCE_IP, checks.ip_or_cidr),
    "remote_ip_blocks": Attribute(Match.REMOTE_IP, checks.ip_or_cidr),
}
OPERATION_ATTRIBUTES: dict[str, Attribute] = {
    "hosts": Attribute(Match.HOST),
    "ports": Attribute(Match.PORT, port_value),
    "methods": Attribute(Match.METHOD),
    "paths": Attribute(Match.PATH, path_template),
}
# `when` keys: plain ones, and the map ones written name[entry].
WHEN_ATTRIBUTES: dict[str, Attribute] = {
    "source.ip": Attribute(Match.SOURCE_IP, checks.ip_or_cidr),
    "remote.ip": Attribute(Match.REMOTE_IP, checks.ip_or_cidr),
    "source.namespace": Attribute(Match.NAMESPACE, custom=False),
    "source.principal": Attribute(Match.PRINCIPAL, custom=False),
    "source.serviceAccount": Attribute(Match.SERVICE_ACCOUNT, service_account, custom=False),
    "source.trustDomain": Attribute(Match.TRUST_DOMAIN, trust_domain, custom=False),
    "request.auth.principal": Attribute(Match.REQUEST_PRINCIPAL, custom=False),
    "request.auth.audiences": Attribute(Match.AUDIENCE, custom=False),
    "request.auth.presenter": Attribute(Match.PRESENTER, custom=False),
    "destination.ip": Attribute(Match.DESTINATION_IP, checks.ip_or_cidr),
    "destination.port": Attribute(Match.PORT, port_value),
    "connection.sni": Attribute(Match.SNI),
}
WHEN_MAP_ATTRIBUTES: dict[str, Attribute] = {
    "request.headers": Attribute(Match.HEADER),
    "request.auth.claims": Attribute(Match.CLAIM, custom=False),
}
# experimental.envoy.filters.<filter name>[<metadata key>]: the map name is the filter's.
EXPERIMENTAL = Attribute(Match.FILTER_METADATA)
_EXPERIMENTAL_PREFIX = "experimental.envoy.filters."
_REMOVED_KEYS = ("destination.namespace", "destination.name", "destination.user")

for _model, _table in ((Source, SOURCE_ATTRIBUTES), (Operation, OPERATION_ATTRIBUTES)):
    if {f.removeprefix("not_") for f in _model.model_fields} != set(_table):
        raise AssertionError(f"{_model.__name__}: fields and attribute table differ")


def when_attribute(key: str) -> tuple[Attribute, tuple[str, ...]] | str:
    """The attribute of a `when` key and its map entries (claims nest: a[b][c]; for
    experimental.envoy.filters.NAME[key] they are the filter name and the key),
    or why the key is refused."""
    if key in WHEN_ATTRIBUTES:
        return WHEN_ATTRIBUTES[key], ()
    if key in _REMOVED_KEYS or key.startswith("destination.labels"):
        return f"attribute {key!r} is no longer supported"
    name, bracket, rest = key.partition("[")
    if name in WHEN_MAP_ATTRIBUTES or key.startswith(_EXPERIMENTAL_PREFIX):
        entries = tuple(rest[:-1].split("][")) if bracket and rest.endswith("]") else ()
        if not entries or not all(entries) or any("[" in e or "]" in e for e in entries):
            return f"key {key!r} must have the form name[entry], e.g. request.headers[x-token]"
        if name == "request.headers" and len(entries) > 1:
            return f"key {key!r}: a header name is one entry, e.g. request.headers[x-token]"
        if name in WHEN_MAP_ATTRIBUTES:
            return WHEN_MAP_ATTRIBUTES[name], entries
        if len(entries) > 1 or name == _EXPERIMENTAL_PREFIX.rstrip("."):
            return f"key {key!r} must have the form experimental.envoy.filters.NAME[key]"
        return EXPERIMENTAL, (name.removeprefix("experimental."), *entries)
    return f"unknown attribute {key!r}"


# ---- rules -------------------------------------------------------------------


def _alias(model: type[Spec], name: str) -> str:
    return model.model_fields[name].alias or name


def _check_list(
    values: list[str], check: Callable[[str], str | None] | None, issues: Issues, field: str
) -> None:
    for i, value in enumerate(values):
        if not value:
            issues.error("must not be an empty string", field, i)
        elif check is not None and (message := check(value)) is not None:
            issues.error(message, field, i)


def _check_source(src: Source, custom: bool, issues: Issues) -> None:
    set_fields = [name for name in Source.model_fields if getattr(src, name)]
    if not set_fields:
        issues.error("must set at least one field")
    for name in Source.model_fields:
        values: list[str] | None = getattr(src, name)
        if values is None:
            continue
        field = _alias(Source, name)
        attribute = SOURCE_ATTRIBUTES[name.removeprefix("not_")]
        _check_list(values, attribute.check, issues, field)
        if custom and values and not attribute.custom:
            issues.error(f"{field} is not supported with the CUSTOM action", field)
    for name in ("service_accounts", "not_service_accounts"):
        values = getattr(src, name)
        if values and len(values) > _MAX_SERVICE_ACCOUNTS:
            issues.error(f"at most {_MAX_SERVICE_ACCOUNTS} service accounts", _alias(Source, name))
    if (src.service_accounts or src.not_service_accounts) and (
        src.principals or src.not_principals or src.namespaces or src.not_namespaces
    ):
        field = "serviceAccounts" if src.service_accounts else "notServiceAccounts"
        issues.error("cannot set serviceAccounts together with namespaces or principals", field)


def _check_operation(op: Operation, issues: Issues) -> None:
    if not any(getattr(op, name) for name in Operation.model_fields):
        issues.error("must set at least one field")
    for name in Operation.model_fields:
        values: list[str] | None = getattr(op, name)
        if values is not None:
            check = OPERATION_ATTRIBUTES[name.removeprefix("not_")].check
            _check_list(values, check, issues, _alias(Operation, name))


def _check_condition(cond: Condition, custom: bool, issues: Issues) -> None:
    key = cond.key or ""
    found = when_attribute(key) if key else "required field is missing"
    if isinstance(found, str):
        issues.error(found, "key")
    elif custom and not found[0].custom:
        issues.error(f"condition key {key!r} is not supported with the CUSTOM action", "key")
    if not cond.values and not cond.not_values:
        issues.error(f"at least one of values or notValues must be set for key {key!r}")
    check = None if isinstance(found, str) else found[0].check
    _check_list(cond.values or [], check, issues, "values")
    _check_list(cond.not_values or [], check, issues, "notValues")


def check_rule(rule: Rule | None, custom: bool, issues: Issues) -> None:
    """One rule; `issues` is rooted at ``spec.rules[i]``."""
    if rule is None:
        issues.error("a rule must not be null (use {} to match every request)")
        return
    if rule.from_ is not None and not rule.from_:
        issues.error("must not be empty when set", "from")
    elif (m := checks.max_items(rule.from_, 512)) is not None:
        issues.error(m, "from")
    for i, entry in enumerate(rule.from_ or []):
        if entry is None:
            issues.error("must not be null", "from", i)
        elif entry.source is None:
            issues.error("required field is missing", "from", i, "source")
        else:
            _check_source(entry.source, custom, issues.at("from", i, "source"))
    if rule.to is not None and not rule.to:
        issues.error("must not be empty when set", "to")
    for i, target in enumerate(rule.to or []):
        if target is None:
            issues.error("must not be null", "to", i)
        elif target.operation is None:
            issues.error("required field is missing", "to", i, "operation")
        else:
            _check_operation(target.operation, issues.at("to", i, "operation"))
    for i, cond in enumerate(rule.when or []):
        if cond is None:
            issues.error("must not be null", "when", i)
        else:
            _check_condition(cond, custom, issues.at("when", i))


def only_http_attributes(rule: Rule) -> bool:
    """True when the rule matches on HTTP attributes and nothing a TCP connection carries.

    A DENY rule like that still applies to TCP traffic, where the HTTP parts can
    never be checked, so Envoy denies the whole connection.
    """
    used: list[bool] = []  # http_only, for every attribute the rule sets
    for entry in rule.from_ or []:
        if entry and entry.source:
            used += [
                SOURCE_ATTRIBUTES[name.removeprefix("not_")].match.http_only
                for name in Source.model_fields
                if getattr(entry.source, name)
            ]
    for target in rule.to or []:
        if target and target.operation:
            used += [
                OPERATION_ATTRIBUTES[name.removeprefix("not_")].match.http_only
                for name in Operation.model_fields
                if getattr(target.operation, name)
            ]
    for cond in rule.when or []:
        found = when_attribute(cond.key) if cond and cond.key else None
        if found is not None and not isinstance(found, str):
            used.append(found[0].match.http_only)
    return any(used) and all(used)
