"""AuthorizationPolicy rules that Pilot will fail closed on, found at apply time.

Pilot translates every attribute of the shared table (authz_rules), but a few
values the validator accepts still cannot be written as Envoy RBAC; Pilot then
turns the whole rule into "matches nothing" (ALLOW, AUDIT) or "matches every
request" (DENY, CUSTOM), with a metric and a log line. This module names those
values so that Galley's analysis warns about them when they are applied.

What cannot be translated depends on the values alone, never on the workload:
a sidecar's app port and a gateway's listener ports only change what a port
matches, and every accepted port is a number both can use. So the warning
holds for every proxy the policy applies to. Today two kinds of value qualify:

- an IP block whose length is written as a netmask or hostmask
  (``10.0.0.0/255.0.0.0``): Python accepts it, Envoy's CidrRange wants a
  prefix length (Istio itself refuses it at validation);
- a string holding a lone UTF-16 surrogate (only a JSON ``\\ud800`` escape
  makes one): protobuf strings must be UTF-8.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from api.issues import Issue, Severity, join_path
from api.security.authorization_policy import DRY_RUN_ANNOTATION, AuthorizationPolicySpec
from api.security.authz_rules import (
    OPERATION_ATTRIBUTES,
    SOURCE_ATTRIBUTES,
    Attribute,
    Match,
    Operation,
    Rule,
    Source,
    when_attribute,
)

__all__ = ["fail_closed", "untranslatable_value"]

_NOT_UNICODE = "not valid Unicode: it holds a lone surrogate"
_IP_MATCHES = frozenset({Match.SOURCE_IP, Match.REMOTE_IP, Match.DESTINATION_IP})

# What a rule that fails closed does, by action.
_OUTCOME = {
    "ALLOW": "as an ALLOW rule it matches nothing (it allows no request)",
    "AUDIT": "as an AUDIT rule it matches nothing (it audits no request)",
    "DENY": "as a DENY rule it matches every request (every request is denied)",
    "CUSTOM": (
        "as a CUSTOM rule it matches every request (every request goes to the external "
        "authorizer, and is denied if the provider cannot be used)"
    ),
}


def _not_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def untranslatable_value(match: Match, value: str) -> str | None:
    """Why Pilot cannot write this accepted value of an attribute as Envoy RBAC, or None."""
    if _not_utf8(value):
        return _NOT_UNICODE
    if match in _IP_MATCHES:
        address, slash, length = value.partition("/")
        if slash and not (length.isascii() and length.isdigit()):
            prefix = ipaddress.ip_network(value, strict=False).prefixlen
            return f"Envoy needs a prefix length, not a mask: write {address}/{prefix}"
    return None


def _alias(model: type[Source] | type[Operation], name: str) -> str:
    return model.model_fields[name].alias or name


def _fields(
    model: Source | Operation, table: Mapping[str, Attribute]
) -> Iterator[tuple[tuple[str | int, ...], tuple[str, str]]]:
    """(path below the model, (value, reason)) for every value of it Pilot cannot translate."""
    for name in type(model).model_fields:
        match = table[name.removeprefix("not_")].match
        for k, value in enumerate(getattr(model, name) or []):
            if (why := untranslatable_value(match, value)) is not None:
                yield (_alias(type(model), name), k), (value, why)


def _rule(rule: Rule) -> Iterator[tuple[tuple[str | int, ...], tuple[str, str]]]:
    """(path below the rule, (value, reason)) for every part of it Pilot cannot translate."""
    for j, entry in enumerate(rule.from_ or []):
        if entry is not None and entry.source is not None:
            for path, problem in _fields(entry.source, SOURCE_ATTRIBUTES):
                yield ("from", j, "source", *path), problem
    for j, target in enumerate(rule.to or []):
        if target is not None and target.operation is not None:
            for path, problem in _fields(target.operation, OPERATION_ATTRIBUTES):
                yield ("to", j, "operation", *path), problem
    for j, cond in enumerate(rule.when or []):
        key = cond.key if cond is not None else None
        found = when_attribute(key) if key else None
        if cond is None or not key or found is None or isinstance(found, str):
            continue  # refused by validation
        attribute, entries = found
        if any(_not_utf8(e) for e in entries):
            yield ("when", j, "key"), (key, _NOT_UNICODE)
        for field, values in (("values", cond.values), ("notValues", cond.not_values)):
            for k, value in enumerate(values or []):
                if (why := untranslatable_value(attribute.match, value)) is not None:
                    yield ("when", j, field, k), (value, why)


def fail_closed(spec: AuthorizationPolicySpec, annotations: Mapping[str, Any]) -> list[Issue]:
    """A warning at every value that makes its rule fail closed, saying what then happens."""
    action = spec.action or "ALLOW"
    dry_run = str(annotations.get(DRY_RUN_ANNOTATION, "")).lower() in ("1", "t", "true")
    out = []
    for i, rule in enumerate(spec.rules or []):
        if rule is None:
            continue  # refused by validation
        for path, (value, why) in _rule(rule):
            message = (
                f"Pilot cannot translate {value!r} ({why}), so this rule fails closed on "
                f"every workload the policy applies to: {_OUTCOME[action]}"
            )
            if dry_run:
                message += " (dry run: only counted, not enforced)"
            out.append(
                Issue(join_path(("spec", "rules", i, *path)), message + ".", Severity.WARNING)
            )
    return out
