"""AuthorizationPolicy rules: who (`from`), what (`to`) and `when`, with their checks.

Split from authorization_policy.py so the policy module stays about scope and
actions. Every check reports at the user's path, e.g.
``spec.rules[0].from[1].source.principals[0]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import Field

from api import checks
from api.issues import Issues
from api.model import Spec

__all__ = [
    "Condition",
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
    "when_values",
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

_PORT = re.compile(r"^[0-9]+$")
# Characters Envoy accepts in a literal segment of a path template (RFC 3986 pchar).
_PATH_LITERAL = re.compile(r"^[A-Za-z0-9\-._~%!$&'()+,;:@=]+$")
_MAX_SERVICE_ACCOUNTS = 16
_MAX_SERVICE_ACCOUNT_LEN = 320


def port_value(value: str) -> str | None:
    if not _PORT.match(value) or int(value) > 65535:
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
        if templated and not _PATH_LITERAL.match(segment):
            return f"path {value!r}: segment {segment!r} has characters not allowed in a URI path"
    return None


# ---- `when` keys -------------------------------------------------------------

_MAP_KEYS = ("request.headers", "request.auth.claims", "experimental.envoy.filters.")
_PLAIN_KEYS = frozenset(
    {
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "connection.sni",
    }
)
_VALUE_CHECKS: dict[str, Callable[[str], str | None]] = {
    "source.ip": checks.ip_or_cidr,
    "remote.ip": checks.ip_or_cidr,
    "destination.ip": checks.ip_or_cidr,
    "destination.port": port_value,
    "source.serviceAccount": service_account,
    "source.trustDomain": trust_domain,
}
_REMOVED_KEYS = ("destination.namespace", "destination.name", "destination.user")
_CUSTOM_UNSUPPORTED_KEYS = frozenset(
    {"source.namespace", "source.serviceAccount", "source.trustDomain", "source.principal"}
)


def when_key(key: str) -> str | None:
    if key in _REMOVED_KEYS or key.startswith("destination.labels"):
        return f"attribute {key!r} is no longer supported"
    if key in _PLAIN_KEYS or key in _VALUE_CHECKS:
        return None
    if key.startswith(_MAP_KEYS):
        open_at = key.find("[")
        if key.endswith("]") and 0 < open_at < len(key) - 2:
            return None
        return f"key {key!r} must have the form name[entry], e.g. request.headers[x-token]"
    return f"unknown attribute {key!r}"


def when_values(key: str) -> Callable[[str], str | None] | None:
    """The check for the values of a condition key, if it has one."""
    return _VALUE_CHECKS.get(key)


# ---- rules -------------------------------------------------------------------

_CUSTOM_UNSUPPORTED_SOURCE = (
    "principals",
    "not_principals",
    "request_principals",
    "not_request_principals",
    "namespaces",
    "not_namespaces",
    "service_accounts",
    "not_service_accounts",
    "trust_domains",
    "not_trust_domains",
)
_SOURCE_VALUE_CHECKS: dict[str, Callable[[str], str | None]] = {
    "ip_blocks": checks.ip_or_cidr,
    "not_ip_blocks": checks.ip_or_cidr,
    "remote_ip_blocks": checks.ip_or_cidr,
    "not_remote_ip_blocks": checks.ip_or_cidr,
    "service_accounts": service_account,
    "not_service_accounts": service_account,
    "trust_domains": trust_domain,
    "not_trust_domains": trust_domain,
}
_OPERATION_VALUE_CHECKS: dict[str, Callable[[str], str | None]] = {
    "ports": port_value,
    "not_ports": port_value,
    "paths": path_template,
    "not_paths": path_template,
}
_HTTP_OPERATION = ("hosts", "not_hosts", "methods", "not_methods", "paths", "not_paths")
_HTTP_SOURCE = ("request_principals", "not_request_principals")


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
        _check_list(values, _SOURCE_VALUE_CHECKS.get(name), issues, field)
        if custom and values and name in _CUSTOM_UNSUPPORTED_SOURCE:
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
            _check_list(values, _OPERATION_VALUE_CHECKS.get(name), issues, _alias(Operation, name))


def _check_condition(cond: Condition, custom: bool, issues: Issues) -> None:
    key = cond.key or ""
    if not key:
        issues.error("required field is missing", "key")
    elif (message := when_key(key)) is not None:
        issues.error(message, "key")
    elif custom and (key in _CUSTOM_UNSUPPORTED_KEYS or key.startswith("request.auth.")):
        issues.error(f"condition key {key!r} is not supported with the CUSTOM action", "key")
    if not cond.values and not cond.not_values:
        issues.error(f"at least one of values or notValues must be set for key {key!r}")
    check = when_values(key)
    _check_list(cond.values or [], check, issues, "values")
    _check_list(cond.not_values or [], check, issues, "notValues")


def check_rule(rule: Rule | None, custom: bool, issues: Issues) -> None:
    """One rule; `issues` is rooted at ``spec.rules[i]``."""
    if rule is None:
        issues.error("a rule must not be null (use {} to match every request)")
        return
    if rule.from_ is not None and not rule.from_:
        issues.error("must not be empty when set", "from")
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
    used: list[str] = []  # "http" or "tcp" for every attribute the rule sets
    for entry in rule.from_ or []:
        if entry and entry.source:
            used += [
                "http" if name in _HTTP_SOURCE else "tcp"
                for name in Source.model_fields
                if getattr(entry.source, name)
            ]
    for target in rule.to or []:
        if target and target.operation:
            used += [
                "http" if name in _HTTP_OPERATION else "tcp"
                for name in Operation.model_fields
                if getattr(target.operation, name)
            ]
    for cond in rule.when or []:
        if cond and cond.key:
            used.append("http" if cond.key.startswith("request.") else "tcp")
    return "http" in used and "tcp" not in used
