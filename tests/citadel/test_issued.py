"""GET /v1/certificates: what Citadel issued (identity, serial, validity), to the admin
and the viewer credential only, never key material."""

from __future__ import annotations

import datetime
from pathlib import Path

import aiohttp

from citadel.issued import IssuedLog, IssuedRecord
from citadel.settings import CitadelSettings
from tests.citadel.test_app import ADMIN, running


def test_the_log_keeps_the_newest() -> None:
    log = IssuedLog(capacity=2)
    now = datetime.datetime.now(datetime.UTC)
    for serial in (1, 2, 3):
        log.add(IssuedRecord(f"spiffe://td/ns/a/sa/s{serial}", serial, now, now))
    assert [r.serial for r in log.records()] == [2, 3]


async def test_issued_certificates_are_listed_to_the_admin_and_viewer_only(
    tmp_path: Path,
) -> None:
    settings = CitadelSettings(
        state_dir=str(tmp_path / "state"),
        sds_addr="127.0.0.1:0",
        sds_tls_addr=None,
        http_addr="127.0.0.1:0",
        admin_token=ADMIN,  # type: ignore[arg-type]
        viewer_token="viewer",  # type: ignore[arg-type]
    )
    async with running(settings) as citadel:
        issued = citadel.cache.get("shop", "reviews")  # what an SDS stream asks for
        url = f"http://127.0.0.1:{citadel.http_port}/v1/certificates"
        async with aiohttp.ClientSession() as s:
            async with s.get(url) as resp:
                assert resp.status == 401
            async with s.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with s.get(url, headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                assert resp.status == 200
            async with s.get(url, headers={"Authorization": "Bearer viewer"}) as resp:
                assert resp.status == 200
                text = await resp.text()
                body = await resp.json()
            # The viewer may list, nothing more: minting a token is the admin's.
            mint = {"namespace": "shop", "serviceAccount": "x"}
            async with s.post(
                url.replace("certificates", "tokens"),
                json=mint,
                headers={"Authorization": "Bearer viewer"},
            ) as resp:
                assert resp.status == 401
    assert "PRIVATE KEY" not in text and "CERTIFICATE" not in text
    mine = [c for c in body["certificates"] if c["identity"].endswith("/ns/shop/sa/reviews")]
    assert mine == [
        {
            "identity": "spiffe://cluster.local/ns/shop/sa/reviews",
            "serial": f"{issued.serial:x}",
            "notBefore": issued.not_before.isoformat(),
            "notAfter": issued.not_after.isoformat(),
        }
    ]
