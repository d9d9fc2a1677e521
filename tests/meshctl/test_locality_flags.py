"""meshctl's locality flags: `register --zone` lands in the real Consul catalog where Pilot
reads it (the region from the datacenter), and `bootstrap --region/--zone` is the node's
locality, which Pilot reads from the node."""

from __future__ import annotations

import consul
import pytest
import yaml

from api.catalog import instance_from_health_entry
from meshctl.procs import free_port
from pilot.model import Proxy
from tests.meshctl.test_cli import BOOT, meshctl


def test_bootstrap_sets_the_node_locality() -> None:
    out = meshctl(*BOOT, "--region", "dc1", "--zone", "zone-a", "--subzone", "rack-1")
    assert out.returncode == 0, out.stderr
    node = yaml.safe_load(out.stdout)["node"]
    assert node["locality"] == {"region": "dc1", "zone": "zone-a", "sub_zone": "rack-1"}
    where = node["locality"]
    proxy = Proxy.from_node(
        node["id"], node["cluster"], {}, (where["region"], where["zone"], where["sub_zone"])
    )
    assert proxy.locality == "dc1/zone-a/rack-1"
    plain = yaml.safe_load(meshctl(*BOOT).stdout)["node"]
    assert "locality" not in plain


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--zone", "a"], "--zone needs --region"),
        (["--region", "r", "--subzone", "s"], "--subzone needs --zone"),
        (["--region", "r", "--zone", "a/b"], "must not contain '/'"),
    ],
)
def test_bootstrap_locality_errors(flags: list[str], message: str) -> None:
    out = meshctl(*BOOT, *flags)
    assert out.returncode != 0
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_register_zone_reaches_the_catalog(consul_agent: str) -> None:
    host, _, port = consul_agent.rpartition(":")
    instance_id = f"loc-{free_port()}"
    common = [
        "register",
        f"--consul-addr={consul_agent}",
        "--service=loc",
        "--address=127.0.0.1",
        "--port=15006",
    ]
    out = meshctl(*common, f"--id={instance_id}", "--zone=zone-b")
    assert out.returncode == 0, out.stderr
    out = meshctl(*common, f"--id={instance_id}-2", "--region=eu", "--zone=z", "--subzone=s")
    assert out.returncode == 0, out.stderr
    client = consul.Consul(host=host, port=int(port))
    try:
        _, entries = client.health.service("loc")
        found = {
            i.id: i.locality for e in entries if (i := instance_from_health_entry(e)) is not None
        }
        assert found == {instance_id: "dc1/zone-b", f"{instance_id}-2": "eu/z/s"}
    finally:
        client.agent.service.deregister(instance_id)
        client.agent.service.deregister(f"{instance_id}-2")
    bad = meshctl(*common, f"--id={instance_id}-3", "--subzone=s")
    assert bad.returncode != 0 and "subzone: needs a zone" in bad.stderr
