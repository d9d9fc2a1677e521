"""The catalog shape: what meshctl register writes is what Pilot reads back."""

from __future__ import annotations

import pytest

from api.catalog import CatalogError, Instance, instance_from_health_entry, registration_payload


def _entry(body: dict[str, object]) -> dict[str, object]:
    """What /v1/health/service returns for an agent registration of `body`."""
    return {
        "Node": {"Node": "n1", "Address": "192.0.2.1"},
        "Service": {
            "ID": body["ID"],
            "Service": body["Name"],
            "Address": body["Address"],
            "Port": body["Port"],
            "Tags": body["Tags"],
            "Meta": body["Meta"],
        },
        "Checks": [],
    }


def test_register_then_read_back_round_trips() -> None:
    body = registration_payload(
        service="reviews",
        instance_id="reviews-v2-1",
        address="127.0.0.1",
        port=15006,
        namespace="shop",
        service_account="bookinfo-reviews",
        service_port=9080,
        labels={"version": "v2", "app": "reviews"},
        check_http="http://127.0.0.1:9080/healthz",
    )
    assert body["Check"]["HTTP"] == "http://127.0.0.1:9080/healthz"
    inst = instance_from_health_entry(_entry(body))
    assert inst == Instance(
        id="reviews-v2-1",
        service="reviews",
        namespace="shop",
        address="127.0.0.1",
        port=15006,
        service_port=9080,
        service_account="bookinfo-reviews",
        labels={"version": "v2", "app": "reviews"},
    )


def test_registrator_style_entry_is_read_alike() -> None:
    # Registrator: SERVICE_NAME, SERVICE_TAGS=version=v1, SERVICE_NAMESPACE -> meta "namespace".
    entry = {
        "Node": {"Address": "172.18.0.5"},
        "Service": {
            "ID": "host:reviews-v1:9080",
            "Service": "reviews",
            "Address": "",
            "Port": 32768,
            "Tags": ["version=v1", "plain-tag"],
            "Meta": {"namespace": "default", "service_account": "reviews"},
        },
    }
    inst = instance_from_health_entry(entry)
    assert inst is not None
    assert (inst.address, inst.port, inst.labels) == ("172.18.0.5", 32768, {"version": "v1"})
    assert inst.service_port == 80 and inst.service_account == "reviews"


@pytest.mark.parametrize(
    "entry",
    [
        {"Service": {"Service": "x", "Port": 80}},  # no address anywhere
        {"Service": {"Service": "x", "Address": "10.0.0.1", "Port": 0}},
        {"Service": {"Service": "Not_A_Label", "Address": "10.0.0.1", "Port": 80}},
        {
            "Service": {
                "Service": "x",
                "Address": "10.0.0.1",
                "Port": 80,
                "Meta": {"namespace": "a.b"},
            }
        },
        {},
    ],
)
def test_entries_that_cannot_be_mesh_services_are_skipped(entry: dict[str, object]) -> None:
    assert instance_from_health_entry(entry) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service": "Bad_Name"}, "service 'Bad_Name'"),
        ({"namespace": "a.b"}, "namespace 'a.b'"),
        ({"port": 0}, "port 0"),
        ({"service_port": 70000}, "service port 70000"),
        ({"labels": {"namespace": "x"}}, "label 'namespace'"),
        ({"labels": {"app.kubernetes.io/name": "x"}}, "label 'app.kubernetes.io/name'"),
        ({"instance_id": ""}, "id: must not be empty"),
    ],
)
def test_bad_registrations_are_refused_with_the_field(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {
        "service": "s",
        "instance_id": "s-1",
        "address": "127.0.0.1",
        "port": 1,
    }
    args.update(kwargs)
    with pytest.raises(CatalogError, match=message):
        registration_payload(**args)  # type: ignore[arg-type]
