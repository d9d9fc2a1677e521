"""WorkloadEntry and WorkloadGroup on the wire: apps that are not in the Consul catalog,
described by WorkloadEntries and reached through a sidecar via a ServiceEntry's
workloadSelector; their labels select DestinationRule subsets; deleting an entry takes its
endpoint away; its service account is the identity automatic mTLS checks. A WorkloadGroup
is the template `meshctl register --workload-group` registers a catalog instance from.

Everything goes the user's way (`meshctl apply`/`delete` through Galley, Consul KV,
Pilot, real Envoy), and every wait is for the state it needs, never a fixed time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Mesh, Reply, Workload, eventually

pytestmark = pytest.mark.e2e

HOST = "vm-api.mesh.internal"


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with Mesh.running(
        Path(tmp_path_factory.mktemp("workload-entry")), envoy=envoy_bin, citadel=True
    ) as m:
        yield m


@pytest.fixture(scope="module")
def client(mesh: Mesh) -> Workload:
    return mesh.client("caller", service_account="caller")


def entry(name: str, port: int, labels: str, extra: str = "") -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}}}
spec:
  address: 127.0.0.1
  ports: {{http: {port}}}
  labels: {labels}
{extra}"""


def service_entry(name: str, host: str, selector: str) -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {selector}}}
"""


def route_to(host: str, subset: str) -> str:
    name = host.split(".")[0]
    return f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [{host}]
  http: [{{route: [{{destination: {{host: {host}, subset: {subset}}}}}]}}]
"""


def subsets(host: str, *versions: str) -> str:
    listed = ", ".join(f"{{name: {v}, labels: {{version: {v}}}}}" for v in versions)
    return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host.split(".")[0]}}}
spec:
  host: {host}
  subsets: [{listed}]
"""


def seen(mesh: Mesh, client: Workload, host: str, n: int = 20) -> dict[str, int]:
    return mesh.instances_seen(client, host, n)


def only(mesh: Mesh, client: Workload, host: str, instance: str) -> bool:
    return seen(mesh, client, host) == {instance: 20}


@pytest.mark.compat
def test_entries_are_endpoints_their_labels_choose_subsets_and_deleting_one_removes_it(
    mesh: Mesh, client: Workload
) -> None:
    v1 = mesh.add("vm-api", "vm-api-v1", register=False, sidecar=False)
    v2 = mesh.add("vm-api", "vm-api-v2", register=False, sidecar=False)
    # Not in the catalog: only the WorkloadEntries describe them.
    assert mesh.consul().health.service("vm-api")[1] == []
    mesh.apply(
        service_entry("vm-api", HOST, "{app: vm-api}")
        + entry("vm-api-v1", v1.app_port, "{app: vm-api, version: v1}")
        + entry("vm-api-v2", v2.app_port, "{app: vm-api, version: v2}")
        # Selected by its labels only: were this one taken, subset v2 would reach v1's app.
        + entry("other-app", v1.app_port, "{app: other, version: v2}")
    )
    eventually(
        lambda: seen(mesh, client, HOST, 40).keys() == {"vm-api-v1", "vm-api-v2"},
        what="both entries answer through the sidecar",
    )
    # The entries' labels are what DestinationRule subsets select on.
    mesh.apply(subsets(HOST, "v1", "v2") + route_to(HOST, "v2"))
    eventually(lambda: only(mesh, client, HOST, "vm-api-v2"), what="subset v2 only")
    mesh.apply(route_to(HOST, "v1"))
    eventually(lambda: only(mesh, client, HOST, "vm-api-v1"), what="subset v1 only")
    # Deleting the entry takes its endpoint away: the request then fails.
    out = mesh.meshctl("delete", "workloadentry", "vm-api-v1", *mesh.galley_args())
    assert out.returncode == 0, out.stderr
    eventually(
        lambda: mesh.request(client.outbound_port, HOST).status == 503,
        what="no endpoint left in subset v1",
    )
    # Back again: adding an entry pushes like any config.
    mesh.apply(entry("vm-api-v1", v1.app_port, "{app: vm-api, version: v1}"))
    eventually(lambda: only(mesh, client, HOST, "vm-api-v1"), what="the entry is back")
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


def xfcc(reply: Reply) -> str:
    headers = reply.body.get("headers", {}) if isinstance(reply.body, dict) else {}
    return next((v for k, v in headers.items() if k.lower() == "x-forwarded-client-cert"), "")


def san_failures(client: Workload, host: str) -> int:
    lines = client.admin("/stats?filter=ssl\\.fail_verify_san$").splitlines()
    return sum(int(line.rsplit(": ", 1)[1]) for line in lines if f"|{host}.ssl." in line)


def test_entry_service_account_is_the_identity_automatic_mtls_checks(
    mesh: Mesh, client: Workload
) -> None:
    host = "vm-db.mesh.internal"
    # An app behind a sidecar with the mesh identity vm-db, not in the catalog.
    vm = mesh.add("vm-db", "vm-db-1", service_account="vm-db", register=False)
    labels = "{app: vm-db}"
    mesh.apply(
        service_entry("vm-db", host, labels)
        + entry("vm-db-1", vm.inbound_port, labels, "  serviceAccount: vm-db\n")
    )

    def answered() -> Reply | None:
        reply = mesh.request(client.outbound_port, host)
        return reply if reply.status == 200 else None

    reply = eventually(answered, what="automatic mTLS to the entry")
    # Over mutual TLS: the entry's sidecar saw the caller's identity.
    assert "URI=spiffe://cluster.local/ns/default/sa/caller" in xfcc(reply), reply.body
    # The same workload declared as another identity: its certificate does not match.
    mesh.apply(entry("vm-db-1", vm.inbound_port, labels, "  serviceAccount: billing\n"))
    eventually(
        lambda: (
            mesh.request(client.outbound_port, host).status == 503
            and san_failures(client, host) > 0
        ),
        what="the server's certificate refused for its SAN",
    )
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


def test_workload_group_is_the_template_a_registration_takes(mesh: Mesh, client: Workload) -> None:
    mesh.apply("""
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy}
spec:
  metadata: {labels: {app: legacy}}
  template: {labels: {version: v3}, serviceAccount: legacy}
""")
    w = mesh.add("legacy", "legacy-1", register=False)
    out = mesh.meshctl(
        "register",
        f"--consul-addr={mesh.agent_addr}",
        "--workload-group=default/legacy",
        "--service=legacy",
        f"--id={w.instance}",
        "--address=127.0.0.1",
        f"--port={w.inbound_port}",
        "--service-port=9080",
        f"--check-http=http://127.0.0.1:{w.app_port}/healthz",
    )
    assert out.returncode == 0, out.stderr
    [registered] = eventually(
        lambda: mesh.consul().health.service("legacy", passing=True)[1], what="legacy passing"
    )
    meta = registered["Service"]["Meta"]
    assert (meta["namespace"], meta["service_account"]) == ("default", "legacy")
    assert (meta["app"], meta["version"]) == ("legacy", "v3")
    # The group's labels select the subset: the instance answers through it.
    host = "legacy.default.svc.cluster.local"
    mesh.apply(subsets(host, "v3") + route_to(host, "v3"))
    eventually(lambda: only(mesh, client, "legacy", "legacy-1"), what="subset v3 answers")
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
