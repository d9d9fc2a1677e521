"""URLs read as Go's `net/url` reads them (Go 1.26), for the checks Istio makes with it.

Istio refuses a `jwksUri` that Go's `url.Parse` refuses, and a cluster's CRD rule
(`url(self)`) also needs Go's `url.ParseRequestURI` to take it. Python's `urlsplit`
draws the lines elsewhere (it takes a space in the host and `%zz`, and its `.port`
refuses 99999), so the rules are written out here from Go's documented behaviour: control
characters, the scheme, bracketed IPv6 literals, the characters a host may hold, the
port digits, and well-formed percent-escapes. Only what decides acceptance is kept.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["GoURL", "GoURLError", "parse", "parse_request_uri"]

_HEX = frozenset("0123456789abcdefABCDEF")
# ASCII a host may hold besides letters and digits: RFC 3986's unreserved marks and
# sub-delims, ':' and '[]' (port, IPv6), and '<>"' (Go refuses them only when escaped).
_HOST_MARKS = frozenset("-_.~!$&'()*+,;=:[]<>\"")
_USERINFO_MARKS = frozenset("-._:~!$&'()*+,;=%@")


class GoURLError(ValueError):
    """Go would return an error; the message is worded as Go's."""


@dataclass(frozen=True, slots=True)
class GoURL:
    scheme: str  # lower-cased, as Go stores it
    host: str  # host[:port], unescaped; "" when there is no authority
    opaque: str = ""  # "scheme:rest" without "//"

    @property
    def hostname(self) -> str:
        """Go's URL.Hostname(): the host without port or IPv6 brackets."""
        host, _ = _split_host_port(self.host)
        return host

    @property
    def port(self) -> str:
        """Go's URL.Port(): the digits after the host's last ':', or ""."""
        _, port = _split_host_port(self.host)
        return port


def parse(raw: str) -> GoURL:
    """As Go's url.Parse: the fragment is cut off first, and its escapes checked."""
    rest, hash_, fragment = raw.partition("#")
    url = _parse(rest, via_request=False)
    if hash_:
        _unescape(fragment)
    return url


def parse_request_uri(raw: str) -> GoURL:
    """As Go's url.ParseRequestURI: no fragment, so a '#' is read as part of the URL."""
    return _parse(raw, via_request=True)


def _parse(raw: str, *, via_request: bool) -> GoURL:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise GoURLError("net/url: invalid control character in URL")
    if not raw and via_request:
        raise GoURLError("empty url")
    if raw == "*":
        return GoURL("", "")
    scheme, rest = _scheme(raw)
    rest = rest.partition("?")[0]  # the query is not checked
    if not rest.startswith("/"):
        if scheme:
            return GoURL(scheme, "", opaque=rest)  # a rootless path: opaque, not checked
        if via_request:
            raise GoURLError("invalid URI for request")
        if ":" in rest.partition("/")[0]:
            raise GoURLError("first path segment in URL cannot contain colon")
    host = ""
    if (scheme or (not via_request and not rest.startswith("///"))) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        host = _authority(scheme, authority)
        rest = slash + path
    _unescape(rest)
    return GoURL(scheme, host)


def _scheme(raw: str) -> tuple[str, str]:
    """(scheme, rest) when raw starts with a scheme ([a-zA-Z][a-zA-Z0-9+.-]*:), else ("", raw)."""
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise GoURLError("missing protocol scheme")
            return raw[:i].lower(), raw[i + 1 :]
        return "", raw
    return "", raw


def _authority(scheme: str, authority: str) -> str:
    userinfo, at, hostport = authority.rpartition("@")
    host = _host(scheme, hostport)
    if at:
        if not all(c.isascii() and (c.isalnum() or c in _USERINFO_MARKS) for c in userinfo):
            raise GoURLError("net/url: invalid userinfo")
        _unescape(userinfo)
    return host


def _host(scheme: str, host: str) -> str:
    bracket = host.rfind("[")
    if bracket > 0:
        raise GoURLError("invalid IP-literal")
    if bracket == 0:
        close = host.rfind("]")
        if close < 0:
            raise GoURLError("missing ']' in host")
        if not _valid_optional_port(port := host[close + 1 :]):
            raise GoURLError(f"invalid port {port!r} after host")
        literal = host[1:close]
        address, zone_mark, zone = literal.partition("%25")
        unescaped = _unescape(address, host=True)
        if zone_mark:
            unescaped += _unescape("%25" + zone, zone=True)
        _ip_literal(unescaped)
        return f"[{unescaped}]{port}"
    if ":" in host:
        # Go 1.26 reads http(s) hosts strictly: the port starts at the first colon.
        colon = host.find(":") if scheme in ("http", "https") else host.rfind(":")
        if not _valid_optional_port(port := host[colon:]):
            raise GoURLError(f"invalid port {port!r} after host")
    return _unescape(host, host=True)


def _ip_literal(text: str) -> None:
    """What may stand between brackets: an IPv6 address (with a zone), never IPv4."""
    address, percent, zone = text.partition("%")
    try:
        version = ipaddress.ip_address(address).version
    except ValueError as err:
        raise GoURLError(f"invalid host: {err}") from None
    if percent and not zone:
        raise GoURLError(f"invalid host: {text!r}: the zone must not be empty")
    if version == 4:
        raise GoURLError("invalid IP-literal")


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all("0" <= c <= "9" for c in port[1:]))


def _split_host_port(host_port: str) -> tuple[str, str]:
    host, port = host_port, ""
    colon = host.rfind(":")
    if colon != -1 and _valid_optional_port(host[colon:]):
        host, port = host[:colon], host[colon + 1 :]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _host_ascii_ok(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in _HOST_MARKS)


def _host_char_ok(c: str) -> bool:
    return not c.isascii() or _host_ascii_ok(c)


def _unescape(text: str, *, host: bool = False, zone: bool = False) -> str:
    """Go's unescape: every '%' opens two hex digits; in a host only non-ASCII bytes (and
    %25) may be escaped, and in an IPv6 zone only what a host may hold, or a space."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            escape = text[i : i + 3]
            if len(escape) < 3 or escape[1] not in _HEX or escape[2] not in _HEX:
                raise GoURLError(f"invalid URL escape {escape!r}")
            byte = int(escape[1:], 16)
            if host and byte < 0x80 and escape != "%25":
                raise GoURLError(f"invalid URL escape {escape!r}")
            if zone and escape != "%25" and byte != 0x20 and not _host_ascii_ok(chr(byte)):
                raise GoURLError(f"invalid URL escape {escape!r}")
            out.append(byte)
            i += 3
            continue
        if (host or zone) and not _host_char_ok(c):
            raise GoURLError(f"invalid character {c!r} in host name")
        out += c.encode("utf-8", "surrogatepass")
        i += 1
    return out.decode("utf-8", "replace")
