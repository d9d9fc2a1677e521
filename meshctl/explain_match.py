"""Envoy's matchers, evaluated over config as Pilot's config dump shows it (proto JSON).

Pure functions: strings, headers, query parameters, route matches, virtual host
domains, metadata values and URI templates, each as Envoy decides it. A
matcher this module does not know is reported through `Unsupported`, never
guessed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "Headers",
    "Json",
    "Unsupported",
    "cidr_contains",
    "header_matches",
    "match_domain",
    "metadata_matches",
    "path_only",
    "query_params",
    "route_matches",
    "string_matches",
    "uri_template_matches",
    "value_matches",
]

Json = dict[str, Any]
# Request headers by lower-case name (pseudo-headers :method, :path, :authority,
# :scheme included); a repeated header has several values.
Headers = Mapping[str, Sequence[str]]


class Unsupported(Exception):
    """Config this evaluator does not know how to decide (named in the message)."""


def _regex(spec: Json) -> re.Pattern[str]:
    pattern = spec.get("regex", "")
    try:
        return re.compile(pattern)
    except re.error as err:  # RE2 syntax Python lacks
        raise Unsupported(f"regex {pattern!r}: {err}") from err


def string_matches(matcher: Json, value: str) -> bool:
    """envoy.type.matcher.v3.StringMatcher; a regex must match the whole value."""
    ignore = bool(matcher.get("ignoreCase"))
    folded = value.lower() if ignore else value

    def expected(key: str) -> str:
        text = str(matcher[key])
        return text.lower() if ignore else text

    if "exact" in matcher:
        return folded == expected("exact")
    if "prefix" in matcher:
        return folded.startswith(expected("prefix"))
    if "suffix" in matcher:
        return folded.endswith(expected("suffix"))
    if "contains" in matcher:
        return expected("contains") in folded
    if "safeRegex" in matcher:
        return _regex(matcher["safeRegex"]).fullmatch(value) is not None
    if not matcher:  # an empty exact match
        return value == ""
    raise Unsupported(f"string matcher {sorted(matcher)}")


def header_matches(matcher: Json, headers: Headers) -> bool:
    """envoy.config.route.v3.HeaderMatcher: a repeated header is matched as its values
    joined with ','; a missing header matches nothing, inverted or not, except
    `present_match` (Envoy's rule)."""
    name = str(matcher.get("name", "")).lower()
    invert = bool(matcher.get("invertMatch"))
    values = headers.get(name)
    present_kind = "presentMatch" in matcher or not any(
        k in matcher
        for k in (
            "stringMatch",
            "exactMatch",
            "safeRegexMatch",
            "prefixMatch",
            "suffixMatch",
            "containsMatch",
            "rangeMatch",
        )
    )
    present_wanted = bool(matcher.get("presentMatch", True)) if present_kind else False
    if not values:
        if matcher.get("treatMissingHeaderAsEmpty"):
            values = [""]
        else:
            return present_kind and (present_wanted if invert else not present_wanted)
    value = ",".join(values)
    if present_kind:
        matched = present_wanted
    elif "stringMatch" in matcher:
        matched = string_matches(matcher["stringMatch"], value)
    elif "exactMatch" in matcher:
        matched = not matcher["exactMatch"] or value == matcher["exactMatch"]
    elif "safeRegexMatch" in matcher:
        matched = _regex(matcher["safeRegexMatch"]).fullmatch(value) is not None
    elif "prefixMatch" in matcher:
        matched = value.startswith(matcher["prefixMatch"])
    elif "suffixMatch" in matcher:
        matched = value.endswith(matcher["suffixMatch"])
    elif "containsMatch" in matcher:
        matched = matcher["containsMatch"] in value
    else:
        rng = matcher["rangeMatch"]
        try:
            number = int(value)
        except ValueError:
            matched = False
        else:
            matched = int(rng.get("start", 0)) <= number < int(rng.get("end", 0))
    return matched != invert


def path_only(path: str) -> str:
    """The path without query and fragment (what exact, regex and RBAC path matchers see)."""
    return path.split("?", 1)[0].split("#", 1)[0]


def query_params(path: str) -> dict[str, str]:
    """The first value of each query parameter, decoded (as Envoy matches them)."""
    query = path.split("?", 1)[1].split("#", 1)[0] if "?" in path else ""
    out: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(key, value)
    return out


def _query_matches(matcher: Json, params: Mapping[str, str]) -> bool:
    name = matcher.get("name", "")
    if name not in params:
        return False
    if "stringMatch" in matcher:
        return string_matches(matcher["stringMatch"], params[name])
    return True  # present_match (or no match specifier: presence)


def uri_template_matches(template: str, path: str) -> bool:
    """Envoy's URI template: `*` one non-empty segment, `**` the rest (any segments),
    `{name}`/`{name=*}`/`{name=**}` the same, captured."""
    parts: list[str] = []
    for segment in template.split("/"):
        names = re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*(?:=(\*\*?))?\}", segment)
        if names is not None:
            segment = names.group(1) or "*"
        if segment == "**":
            parts.append(".*")
        elif segment == "*":
            parts.append("[^/]+")
        else:
            parts.append("[^/]*".join(re.escape(p) for p in segment.split("*")))
    return re.fullmatch("/".join(parts), path_only(path)) is not None


def _path_matches(match: Json, path: str) -> tuple[bool, str]:
    """(matched, how) for the path part of a RouteMatch."""
    case_sensitive = match.get("caseSensitive", True) is not False

    def fold(text: str) -> str:
        return text if case_sensitive else text.lower()

    if "prefix" in match:
        prefix = match["prefix"]
        return fold(path).startswith(fold(prefix)), f"prefix {prefix!r}"
    if "path" in match:
        exact = match["path"]
        return fold(path_only(path)) == fold(exact), f"path {exact!r}"
    if "safeRegex" in match:
        regex = match["safeRegex"].get("regex", "")
        return _regex(match["safeRegex"]).fullmatch(path_only(path)) is not None, f"regex {regex!r}"
    if "pathSeparatedPrefix" in match:
        prefix = match["pathSeparatedPrefix"]
        bare = fold(path_only(path))
        wanted = fold(prefix)
        return bare == wanted or bare.startswith(wanted + "/"), f"path-separated prefix {prefix!r}"
    if "pathMatchPolicy" in match:
        config = match["pathMatchPolicy"].get("typedConfig", {})
        template = config.get("pathTemplate")
        if template is None:
            raise Unsupported(f"path match policy {config.get('@type', '?')}")
        return uri_template_matches(template, path), f"template {template!r}"
    raise Unsupported(f"route match on {sorted(match)}")


def route_matches(match: Json, headers: Headers) -> tuple[bool, list[str]]:
    """Does a RouteMatch match the request? Returns (matched, what was checked / why not)."""
    path = (headers.get(":path") or ["/"])[0]
    ok, how = _path_matches(match, path)
    if not ok:
        return False, [f"{how} does not match {path_only(path)!r}"]
    why = [how]
    for header in match.get("headers", []):
        if not header_matches(header, headers):
            return False, [*why, f"header {_describe_header(header)} does not match"]
        why.append(f"header {_describe_header(header)}")
    params = query_params(path)
    for param in match.get("queryParameters", []):
        if not _query_matches(param, params):
            return False, [*why, f"query parameter {_describe_param(param)} does not match"]
        why.append(f"query parameter {_describe_param(param)}")
    if "grpc" in match:
        content = ",".join(headers.get("content-type", []))
        if not content.startswith("application/grpc"):
            return False, [*why, "not a gRPC request"]
        why.append("gRPC request")
    if "runtimeFraction" in match:
        why.append("runtime fraction (only some requests)")
    return True, why


def _describe_string(matcher: Json) -> str:
    for key in ("exact", "prefix", "suffix", "contains"):
        if key in matcher:
            return f"{key} {matcher[key]!r}"
    if "safeRegex" in matcher:
        return f"regex {matcher['safeRegex'].get('regex', '')!r}"
    return "?"


def _describe_header(header: Json) -> str:
    name = header.get("name", "")
    invert = "not " if header.get("invertMatch") else ""
    if "stringMatch" in header:
        return f"{name} {invert}{_describe_string(header['stringMatch'])}"
    if "presentMatch" in header and header["presentMatch"] is False:
        return f"{name} {'present' if invert else 'absent'}"
    for key in ("exactMatch", "prefixMatch", "suffixMatch", "containsMatch"):
        if key in header:
            return f"{name} {invert}{key.removesuffix('Match')} {header[key]!r}"
    if "safeRegexMatch" in header:
        return f"{name} {invert}regex {header['safeRegexMatch'].get('regex', '')!r}"
    return f"{name} {'absent' if invert else 'present'}"


def _describe_param(param: Json) -> str:
    name = param.get("name", "")
    if "stringMatch" in param:
        return f"{name} {_describe_string(param['stringMatch'])}"
    return f"{name} present"


def match_domain(
    domains_by_vhost: Sequence[tuple[str, Sequence[str]]], host: str
) -> tuple[int, str] | None:
    """The virtual host Envoy picks for a Host: an exact domain, else the longest
    `*suffix` wildcard, else the longest `prefix*` wildcard, else `*`. Returns
    (index of the virtual host, the domain that matched), or None (Envoy: 404).
    Ports are part of the Host: `reviews:9080` needs a domain with that port."""
    host = host.lower()
    exact: dict[str, tuple[int, str]] = {}
    suffixes: list[tuple[int, int, str]] = []
    prefixes: list[tuple[int, int, str]] = []
    default: tuple[int, str] | None = None
    for index, (_, domains) in enumerate(domains_by_vhost):
        for domain in domains:
            lowered = domain.lower()
            if lowered == "*":
                default = default or (index, domain)
            elif lowered.startswith("*"):
                suffixes.append((len(lowered), index, domain))
            elif lowered.endswith("*"):
                prefixes.append((len(lowered), index, domain))
            else:
                exact.setdefault(lowered, (index, domain))
    if host in exact:
        return exact[host]
    for _, index, domain in sorted(suffixes, key=lambda s: (-s[0], s[1])):
        suffix = domain[1:].lower()
        if len(host) > len(suffix) and host.endswith(suffix):
            return index, domain
    for _, index, domain in sorted(prefixes, key=lambda s: (-s[0], s[1])):
        prefix = domain[:-1].lower()
        if len(host) > len(prefix) and host.startswith(prefix):
            return index, domain
    return default


def value_matches(matcher: Json, value: Any) -> bool:
    """envoy.type.matcher.v3.ValueMatcher over a JSON value (a metadata field)."""
    if "orMatch" in matcher:
        return any(value_matches(m, value) for m in matcher["orMatch"].get("valueMatchers", []))
    if "presentMatch" in matcher:
        return value is not None if matcher["presentMatch"] else False
    if value is None:
        return "nullMatch" in matcher
    if "stringMatch" in matcher:
        return isinstance(value, str) and string_matches(matcher["stringMatch"], value)
    if "boolMatch" in matcher:
        return isinstance(value, bool) and value == matcher["boolMatch"]
    if "doubleMatch" in matcher:
        dm = matcher["doubleMatch"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if "exact" in dm:
            return float(value) == float(dm["exact"])
        rng = dm.get("range", {})
        return float(rng.get("start", 0)) <= float(value) < float(rng.get("end", 0))
    if "listMatch" in matcher:
        one_of = matcher["listMatch"].get("oneOf", {})
        return isinstance(value, list) and any(value_matches(one_of, v) for v in value)
    if "nullMatch" in matcher:
        return False
    raise Unsupported(f"value matcher {sorted(matcher)}")


def metadata_matches(matcher: Json, metadata: Mapping[str, Any]) -> bool:
    """envoy.type.matcher.v3.MetadataMatcher over dynamic metadata (by filter namespace)."""
    node: Any = metadata.get(matcher.get("filter", ""))
    for segment in matcher.get("path", []):
        node = node.get(segment.get("key", "")) if isinstance(node, dict) else None
    matched = value_matches(matcher.get("value", {}), node)
    return matched != bool(matcher.get("invert"))


def cidr_contains(cidr: Json, address: str | None) -> bool:
    """envoy.config.core.v3.CidrRange holds the address?"""
    if not address:
        return False
    prefix = cidr.get("addressPrefix", "")
    length = cidr.get("prefixLen")
    try:
        ip = ipaddress.ip_address(address)
        net = ipaddress.ip_network(
            f"{prefix}/{length if length is not None else (128 if ':' in prefix else 32)}",
            strict=False,
        )
    except ValueError:
        return False
    return ip.version == net.version and ip in net
