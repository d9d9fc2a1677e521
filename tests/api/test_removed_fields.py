"""Fields Istio's API removed are refused as unknown fields, saying they were removed (and
what to use instead); fields it only deprecated keep Istio's verdict."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel

from api import checks
from api.resources import kinds
from tests.api.helpers import check, errors, warnings

ROUTE = {"destination": {"host": "r"}}


def http(**route: Any) -> dict[str, Any]:
    return {"hosts": ["r"], "http": [{"route": [ROUTE], **route}]}


def destination(**fields: Any) -> dict[str, Any]:
    return {"hosts": ["r"], "http": [{"route": [{**ROUTE, **fields}]}]}


def abort(**fields: Any) -> dict[str, Any]:
    return http(fault={"abort": {"httpStatus": 503, **fields}})


EGRESS = {"hosts": ["./*"]}
INGRESS = {"port": {"number": 9080, "name": "http", "protocol": "HTTP"}}

REMOVED: list[tuple[str, dict[str, Any], str, str]] = [
    ("VirtualService", http(websocketUpgrade=True), "spec.http[0].websocketUpgrade", "1.5"),
    ("VirtualService", http(appendHeaders={"a": "b"}), "spec.http[0].appendHeaders", "1.5"),
    (
        "VirtualService",
        http(appendRequestHeaders={"a": "b"}),
        "spec.http[0].appendRequestHeaders",
        "1.5",
    ),
    (
        "VirtualService",
        http(removeRequestHeaders=["a"]),
        "spec.http[0].removeRequestHeaders",
        "1.5",
    ),
    (
        "VirtualService",
        http(appendResponseHeaders={"a": "b"}),
        "spec.http[0].appendResponseHeaders",
        "1.5",
    ),
    (
        "VirtualService",
        http(removeResponseHeaders=["a"]),
        "spec.http[0].removeResponseHeaders",
        "1.5",
    ),
    (
        "VirtualService",
        destination(appendRequestHeaders={"a": "b"}),
        "spec.http[0].route[0].appendRequestHeaders",
        "1.5",
    ),
    (
        "VirtualService",
        destination(removeRequestHeaders=["a"]),
        "spec.http[0].route[0].removeRequestHeaders",
        "1.5",
    ),
    (
        "VirtualService",
        destination(appendResponseHeaders={"a": "b"}),
        "spec.http[0].route[0].appendResponseHeaders",
        "1.5",
    ),
    (
        "VirtualService",
        destination(removeResponseHeaders=["a"]),
        "spec.http[0].route[0].removeResponseHeaders",
        "1.5",
    ),
    (
        "VirtualService",
        {
            "hosts": ["r"],
            "tls": [
                {"match": [{"sniHosts": ["r"], "sourceSubnet": "10.0.0.0/8"}], "route": [ROUTE]}
            ],
        },
        "spec.tls[0].match[0].sourceSubnet",
        "1.5",
    ),
    ("VirtualService", abort(percent=50), "spec.http[0].fault.abort.percent", "1.5"),
    (
        "VirtualService",
        destination(destination={"host": "r", "port": {"name": "http"}}),
        "spec.http[0].route[0].destination.port.name",
        "1.4",
    ),
    (
        "VirtualService",
        http(mirror={"host": "m", "port": {"number": 80, "name": "http"}}),
        "spec.http[0].mirror.port.name",
        "1.4",
    ),
    (
        "VirtualService",
        {
            "hosts": ["r"],
            "tcp": [{"route": [{"destination": {"host": "r", "port": {"name": "t"}}}]}],
        },
        "spec.tcp[0].route[0].destination.port.name",
        "1.4",
    ),
    ("Sidecar", {"egress": [EGRESS], "localhost": {}}, "spec.localhost", "1.7"),
    (
        "Sidecar",
        {"ingress": [{**INGRESS, "localhostClientTls": {}}]},
        "spec.ingress[0].localhostClientTls",
        "1.7",
    ),
    (
        "Sidecar",
        {"egress": [{**EGRESS, "localhostServerTls": {}}]},
        "spec.egress[0].localhostServerTls",
        "1.7",
    ),
    (
        "Sidecar",
        {
            "outboundTrafficPolicy": {
                "mode": "ALLOW_ANY",
                "egressProxy": {"host": "proxy.example.com", "port": {"name": "http"}},
            }
        },
        "spec.outboundTrafficPolicy.egressProxy.port.name",
        "1.4",
    ),
    (
        "DestinationRule",
        {
            "host": "reviews",
            "trafficPolicy": {
                "portLevelSettings": [
                    {"port": {"name": "http"}, "loadBalancer": {"simple": "ROUND_ROBIN"}}
                ]
            },
        },
        "spec.trafficPolicy.portLevelSettings[0].port.name",
        "1.4",
    ),
]


@pytest.mark.parametrize(("kind", "spec", "path", "release"), REMOVED, ids=[r[2] for r in REMOVED])
def test_a_removed_field_is_refused_saying_it_was_removed(
    kind: str, spec: dict[str, Any], path: str, release: str
) -> None:
    (error,) = errors(check(kind, spec))
    assert error.startswith(f"{path}: unknown field: removed from the API in Istio {release} ("), (
        error
    )


def test_the_message_says_what_to_use_instead() -> None:
    assert errors(check("VirtualService", http(appendHeaders={"a": "b"}))) == [
        "spec.http[0].appendHeaders: unknown field: removed from the API in Istio 1.5 "
        "(use headers.request.add)"
    ]


def test_other_errors_of_the_document_are_still_reported_beside_it() -> None:
    spec = http(websocketUpgrade=True, timeout=5, bogus=1)
    assert errors(check("VirtualService", spec)) == [
        "spec.http[0].timeout: must be a string, not int",
        "spec.http[0].websocketUpgrade: unknown field: removed from the API in Istio 1.5 "
        "(websocket upgrades are always allowed)",
        "spec.http[0].bogus: unknown field",
    ]


def test_a_removed_name_where_it_was_never_a_field_is_a_plain_unknown_field() -> None:
    # `percent` went from abort, not from the route; `name` from PortSelector, not Delegate.
    assert errors(check("VirtualService", http(percent=5))) == [
        "spec.http[0].percent: unknown field"
    ]


# --- deprecated, not removed: Istio's verdict stands ----------------------------------------


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        # fault.delay.percent is deprecated; Istio only warns when it is out of 0..100.
        ("VirtualService", http(fault={"delay": {"fixedDelay": "1s", "percent": 50}})),
        ("VirtualService", http(fault={"delay": {"fixedDelay": "1s", "percent": 150}})),
        # tcp[].match[].sourceSubnet stays (only the TLS match lost it).
        (
            "VirtualService",
            {
                "hosts": ["r"],
                "tcp": [{"match": [{"sourceSubnet": "10.0.0.0/8"}], "route": [ROUTE]}],
            },
        ),
        # Port names of Gateway and ServiceEntry ports are current fields.
        (
            "Gateway",
            {
                "servers": [
                    {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
                ]
            },
        ),
        (
            "ServiceEntry",
            {
                "hosts": ["api.example.com"],
                "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
                "resolution": "DNS",
            },
        ),
    ],
)
def test_deprecated_or_current_fields_keep_istio_s_verdict(kind: str, spec: dict[str, Any]) -> None:
    result = check(kind, spec)
    assert result.ok, errors(result)


def test_an_out_of_range_deprecated_delay_percent_is_only_warned_about() -> None:
    result = check("VirtualService", http(fault={"delay": {"fixedDelay": "1s", "percent": 150}}))
    assert "spec.http[0].fault.delay.percent: percent 150 should be in 0..100" in warnings(result)


# --- the table itself ------------------------------------------------------------------------


def _models(model: Any, seen: dict[str, type[BaseModel]]) -> None:
    """Every model reachable from a spec model, by class name."""
    for arg in typing.get_args(model) or [model]:
        if typing.get_args(arg):
            _models(arg, seen)
        elif isinstance(arg, type) and issubclass(arg, BaseModel) and arg.__name__ not in seen:
            seen[arg.__name__] = arg
            for field in arg.model_fields.values():
                _models(field.annotation, seen)


def test_every_table_entry_names_a_model_of_a_refusing_kind_and_an_undeclared_field() -> None:
    """A renamed model or a field added back would silently turn an entry off."""
    reachable: dict[str, type[BaseModel]] = {}
    for kind in ("VirtualService", "Sidecar", "DestinationRule"):  # they refuse removed fields
        _models(kinds()[kind].spec_model, reachable)
    for model_name, fields in checks.REMOVED_FIELDS.items():
        assert model_name in reachable, model_name
        declared = {f.alias for f in reachable[model_name].model_fields.values()}
        assert not declared & set(fields), (model_name, declared & set(fields))
