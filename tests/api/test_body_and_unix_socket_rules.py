"""Two rules Istio enforces in several places: a direct response body is a string or bytes
(a protobuf oneof), and a unix socket is `unix://` plus an absolute path to a file (or
`@name`, an abstract socket). Each refused at its field path, the limits accepted."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from tests.api.helpers import check, errors

BODY_B64 = base64.b64encode(b"gone").decode()


def direct_response(body: dict[str, Any]) -> dict[str, Any]:
    return {"hosts": ["r"], "http": [{"directResponse": {"status": 410, "body": body}}]}


@pytest.mark.parametrize("body", [{"string": "gone"}, {"bytes": BODY_B64}, {"string": ""}])
def test_a_body_of_either_kind_is_accepted(body: dict[str, Any]) -> None:
    result = check("VirtualService", direct_response(body))
    assert result.ok, errors(result)


def test_a_body_with_both_string_and_bytes_is_refused() -> None:
    result = check("VirtualService", direct_response({"string": "gone", "bytes": BODY_B64}))
    assert errors(result) == [
        "spec.http[0].directResponse.body: only one of string or bytes may be set"
    ]


# --- unix sockets: every field that takes one, and where its error goes ----------------------


def gateway_bind(address: str) -> tuple[str, dict[str, Any]]:
    port = {"number": 0, "name": "uds", "protocol": "HTTP"}
    return "Gateway", {"servers": [{"port": port, "hosts": ["*"], "bind": address}]}


def sidecar_egress_bind(address: str) -> tuple[str, dict[str, Any]]:
    listener = {"port": {"number": 0, "name": "uds"}, "bind": address, "hosts": ["./*"]}
    return "Sidecar", {"egress": [listener]}


def sidecar_default_endpoint(address: str) -> tuple[str, dict[str, Any]]:
    port = {"number": 9080, "name": "http", "protocol": "HTTP"}
    return "Sidecar", {"ingress": [{"port": port, "defaultEndpoint": address}]}


def service_entry_endpoint(address: str) -> tuple[str, dict[str, Any]]:
    return "ServiceEntry", {
        "hosts": ["uds.example.com"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "STATIC",
        "endpoints": [{"address": address}],
    }


def workload_entry_address(address: str) -> tuple[str, dict[str, Any]]:
    return "WorkloadEntry", {"address": address}


PLACES: dict[str, tuple[Callable[[str], tuple[str, dict[str, Any]]], str]] = {
    "gateway bind": (gateway_bind, "spec.servers[0].bind"),
    "sidecar egress bind": (sidecar_egress_bind, "spec.egress[0].bind"),
    "sidecar defaultEndpoint": (sidecar_default_endpoint, "spec.ingress[0].defaultEndpoint"),
    "serviceentry endpoint": (service_entry_endpoint, "spec.endpoints[0].address"),
    "workloadentry address": (workload_entry_address, "spec.address"),
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize(
    "address", ["unix:///var/run/app.sock", "unix:///s", "unix://@abstract", "unix://@"]
)
def test_an_absolute_file_path_or_an_abstract_name_is_accepted(place: str, address: str) -> None:
    build, _ = PLACES[place]
    result = check(*build(address))
    assert result.ok, errors(result)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("unix://var/run/app.sock", "'var/run/app.sock' is not an absolute path to a file"),
        ("unix:///var/run/", "'/var/run/' is not an absolute path to a file"),
        ("unix:///", "'/' is not an absolute path to a file"),
        ("unix://", "unix address must not be empty"),
    ],
)
def test_a_relative_path_a_directory_or_nothing_is_refused(
    place: str, address: str, message: str
) -> None:
    build, path = PLACES[place]
    result = check(*build(address))
    assert f"{path}: {message}" in errors(result), errors(result)
