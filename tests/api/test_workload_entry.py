"""WorkloadEntry and WorkloadGroup: validated as Istio does; not registered yet (warned)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import check, errors, warnings

ENTRY = {
    "address": "10.0.0.7",
    "ports": {"http": 8080},
    "labels": {"app": "legacy", "version": "v1"},
    "serviceAccount": "legacy",
    "network": "vm-net",
}
GROUP = {
    "metadata": {"labels": {"app": "legacy"}},
    "template": {"ports": {"http": 8080}, "serviceAccount": "legacy"},
    "probe": {"periodSeconds": 5, "httpGet": {"path": "/ready", "port": 8080}},
}


def test_valid_entry_and_group_are_accepted_with_the_not_registered_warning() -> None:
    for kind, spec in (("WorkloadEntry", ENTRY), ("WorkloadGroup", GROUP)):
        result = check(kind, spec)
        assert result.ok, errors(result)
        assert any("do not become endpoints yet" in w for w in warnings(result)), warnings(result)


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        ("WorkloadEntry", {**ENTRY, "address": "", "network": ""}, "spec.address: required"),
        ("WorkloadEntry", {**ENTRY, "address": "not an address!"}, "spec.address: address"),
        ("WorkloadEntry", {**ENTRY, "ports": {"http": 0}}, "spec.ports.http: port number 0"),
        ("WorkloadEntry", {**ENTRY, "serviceAccount": "Bad_SA"}, "spec.serviceAccount: service"),
        (
            "WorkloadEntry",
            {**ENTRY, "address": "unix:///var/run/app.sock"},
            "spec.ports: a unix socket address must not list ports",
        ),
        ("WorkloadGroup", {**GROUP, "template": None}, "spec.template: required"),
        (
            "WorkloadGroup",
            {**GROUP, "template": {"address": "10.0.0.1"}},
            "spec.template.address: a template must not set an address",
        ),
        (
            "WorkloadGroup",
            {**GROUP, "probe": {"httpGet": {"port": 80}, "tcpSocket": {"port": 80}}},
            "spec.probe: exactly one of",
        ),
        (
            "WorkloadGroup",
            {**GROUP, "probe": {"tcpSocket": {"port": 70000}}},
            "spec.probe.tcpSocket.port: port number 70000",
        ),
        (
            "WorkloadGroup",
            {**GROUP, "probe": {"exec": {"command": []}, "periodSeconds": -1}},
            "spec.probe.periodSeconds: must not be negative",
        ),
    ],
)
def test_invalid_entries_and_groups_name_the_field(
    kind: str, spec: dict[str, Any], expected: str
) -> None:
    result = check(kind, spec)
    assert any(e.startswith(expected) for e in errors(result)), errors(result)
