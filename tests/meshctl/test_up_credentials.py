"""`meshctl up`'s control plane holds gateway credentials: its Citadel is given Consul, and
the ingress gateway's token carries the gateway role (workloads' tokens do not)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

from meshctl.up import Mesh
from tests.citadel.helpers import make_ca, make_server, tls_doc


def _claims(token_file: Path) -> dict[str, object]:
    body = token_file.read_text().split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def test_up_citadel_keeps_credentials_and_the_gateway_token_has_the_role(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path / "mesh", report=lambda _: None)
    try:
        mesh.start_control_plane()
        gateway = mesh.token_file("istio-system", "ingressgateway", gateway=True)
        assert _claims(gateway).get("gw") is True
        assert "gw" not in _claims(mesh.token_file("default", "shop-reviews"))
        req = urllib.request.Request(
            f"http://127.0.0.1:{mesh.citadel_http}/v1/secrets/istio-system/shop-cert",
            method="PUT",
            data=json.dumps(tls_doc(make_server(make_ca()))).encode(),
            headers={"Authorization": f"Bearer {mesh.admin_token.read_text().strip()}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 201
        except urllib.error.HTTPError as err:  # 503 would mean Citadel has no Consul
            raise AssertionError(f"{err.code}: {err.read().decode()}") from err
    finally:
        mesh.stop()
