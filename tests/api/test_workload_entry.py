"""WorkloadEntry and WorkloadGroup: validated as Istio does; what this mesh does not apply
of them (one network, equal weights, the group's fields a catalog registration has no
place for) is warned at its path."""

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


def not_applied(found: list[str]) -> list[str]:
    return [w.split(":", 1)[0] for w in found if "accepted but not applied" in w]


def test_valid_entry_and_group_warn_only_what_is_not_applied() -> None:
    entry = check("WorkloadEntry", {**ENTRY, "weight": 3, "locality": "eu/west-1"})
    assert entry.ok, errors(entry)
    assert not_applied(warnings(entry)) == ["spec.network", "spec.weight"]
    group = check(
        "WorkloadGroup",
        {**GROUP, "metadata": {"labels": {"app": "legacy"}, "annotations": {"a": "b"}}},
    )
    assert group.ok, errors(group)
    assert not_applied(warnings(group)) == [
        "spec.metadata.annotations",
        "spec.template.ports",
        "spec.probe",
    ]
    assert not_applied(warnings(check("WorkloadGroup", {"template": {"labels": {"a": "b"}}}))) == []


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
