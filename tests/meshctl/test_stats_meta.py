"""The sidecar's stats port in the instance's Consul meta (`prometheus_port`), written by
`meshctl register --stats-port` and by the registrator from SERVICE_PROMETHEUS_PORT:
meta only, never a tag."""

from __future__ import annotations

import pytest

from api.catalog import CatalogError, registration_payload
from meshctl.registration import PROMETHEUS_PORT_META, with_stats
from meshctl.registrator import plan_container
from tests.meshctl.test_registrator import COMPOSE_LABELS, container


def test_with_stats_adds_the_meta_key_only() -> None:
    body = registration_payload(service="web", instance_id="web-1", address="10.0.0.1", port=1)
    out = with_stats(body, 15090)
    assert out["Meta"][PROMETHEUS_PORT_META] == "15090" and out["Tags"] == body["Tags"]
    assert PROMETHEUS_PORT_META not in body["Meta"]  # a copy, not a change
    assert with_stats(body, None) is body
    with pytest.raises(CatalogError, match="stats port 0"):
        with_stats(body, 0)


def test_the_registrator_takes_service_prometheus_port_into_meta() -> None:
    labels = {**COMPOSE_LABELS, "SERVICE_PROMETHEUS_PORT": "15090"}
    plan = plan_container(container("meshpy-details-v1-1", labels), "host1")
    assert plan.problems == []
    (body,) = plan.registrations.values()
    assert body["Meta"][PROMETHEUS_PORT_META] == "15090"
    assert not any(t.startswith(PROMETHEUS_PORT_META) for t in body["Tags"])
    bad = plan_container(
        container("meshpy-x-1", {**COMPOSE_LABELS, "SERVICE_PROMETHEUS_PORT": "http"}), "host1"
    )
    assert bad.registrations == {} and "prometheus_port 'http'" in bad.problems[0]


def test_meshctl_register_stats_port(consul_agent: str) -> None:
    import consul

    from meshctl.cli import main

    host, port = consul_agent.split(":")
    argv = ["register", f"--consul-addr={consul_agent}", "--service=statsy", "--id=statsy-1"]
    argv += ["--address=127.0.0.1", "--port=15006", "--stats-port=15090"]
    assert main(argv) == 0
    agent = consul.Consul(host=host, port=int(port)).agent
    try:
        meta = agent.services()["statsy-1"]["Meta"]
        assert meta[PROMETHEUS_PORT_META] == "15090" and meta["namespace"] == "default"
    finally:
        agent.service.deregister("statsy-1")
