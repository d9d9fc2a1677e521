"""The identity cache: one cert per identity, reused on reconnect, rotated at about half-life."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

from citadel.ca import CertificateAuthority
from citadel.identity_cache import IdentityCache
from citadel.metrics import CitadelMetrics


def test_reconnects_reuse_the_cert_and_rotation_happens_near_half_life(tmp_path: Path) -> None:
    now = [0.0]
    ca = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
    cache = IdentityCache(ca, datetime.timedelta(hours=1), CitadelMetrics(), clock=lambda: now[0])
    first = cache.get("shop", "reviews")
    now[0] = first.not_before.timestamp() + 60  # the cert's real start (not_before is backdated)
    assert cache.get("shop", "reviews").serial == first.serial  # a reconnect: same cert
    event = cache.subscribe("shop", "reviews")
    now[0] += 0.35 * 3600
    assert cache.rotate_due() == 0 and not event.is_set()  # before the jitter window
    now[0] += 0.3 * 3600  # past 0.5 + 0.1 jitter at the latest
    assert cache.rotate_due() == 1 and event.is_set()
    assert cache.get("shop", "reviews").serial != first.serial
    assert cache.get("shop", "other").serial not in (first.serial,)  # identities are separate


def test_run_loop_rotates_on_its_own(tmp_path: Path) -> None:
    async def scenario() -> int:
        ca = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
        metrics = CitadelMetrics()
        cache = IdentityCache(ca, datetime.timedelta(seconds=2), metrics, jitter=0.0)
        cache.get("a", "b")
        task = asyncio.create_task(cache.run())
        await asyncio.sleep(2.5)
        task.cancel()
        return int(metrics.rotations._value.get())

    assert asyncio.run(scenario()) >= 1
