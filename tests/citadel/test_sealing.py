"""Gateway credentials at rest: AES-256-GCM, bound to their namespace/name, key 0600."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from citadel.sealing import FORMAT_VERSION, KEY_FILE, Sealer, SealError


def test_round_trip_and_the_envelope_says_nothing_of_the_plaintext(tmp_path: Path) -> None:
    sealer = Sealer.load_or_create(tmp_path / KEY_FILE)
    envelope = sealer.seal("shop/web-cert", b"secret key material")
    doc = json.loads(envelope)
    assert doc["v"] == FORMAT_VERSION and doc["alg"] == "AES-256-GCM"
    assert set(doc) == {"v", "alg", "kid", "nonce", "ciphertext"}
    assert b"secret" not in envelope.encode() and b"secret" not in base64.b64decode(
        doc["ciphertext"]
    )
    assert sealer.open("shop/web-cert", envelope) == b"secret key material"
    assert sealer.open("shop/web-cert", envelope.encode()) == b"secret key material"
    # A fresh nonce each time: the same plaintext never seals to the same value.
    assert sealer.seal("shop/web-cert", b"x") != sealer.seal("shop/web-cert", b"x")


@pytest.mark.parametrize("elsewhere", ["other/web-cert", "shop/other-cert", "shop/web-cert "])
def test_a_value_moved_to_another_name_does_not_open(tmp_path: Path, elsewhere: str) -> None:
    sealer = Sealer.load_or_create(tmp_path / KEY_FILE)
    envelope = sealer.seal("shop/web-cert", b"key")
    with pytest.raises(SealError, match="moved from another name"):
        sealer.open(elsewhere, envelope)


def test_tampered_foreign_and_malformed_envelopes_are_refused(tmp_path: Path) -> None:
    sealer = Sealer.load_or_create(tmp_path / KEY_FILE)
    doc = json.loads(sealer.seal("a/b", b"key"))
    flipped = bytearray(base64.b64decode(doc["ciphertext"]))
    flipped[0] ^= 1
    tampered = json.dumps({**doc, "ciphertext": base64.b64encode(bytes(flipped)).decode()})
    with pytest.raises(SealError, match="does not authenticate"):
        sealer.open("a/b", tampered)
    other = Sealer.load_or_create(tmp_path / "other-key")
    with pytest.raises(SealError, match="another key"):
        other.open("a/b", json.dumps(doc))
    for bad in (
        b"",
        b"not json",
        b"[]",
        json.dumps({**doc, "v": 2}).encode(),
        json.dumps({**doc, "alg": "none"}).encode(),
        json.dumps({**doc, "nonce": 5}).encode(),
        json.dumps({**doc, "nonce": "!!"}).encode(),
        json.dumps({**doc, "nonce": base64.b64encode(b"short").decode()}).encode(),
    ):
        with pytest.raises(SealError):
            sealer.open("a/b", bad)


def test_key_is_created_0600_kept_across_restarts_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "state" / KEY_FILE
    sealer = Sealer.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    envelope = sealer.seal("a/b", b"key")
    path.chmod(0o644)  # someone loosened it: tightened again at the next start
    again = Sealer.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert again.open("a/b", envelope) == b"key"
    assert "kid=" in repr(again) and str(path.read_bytes()) not in repr(again)
    path.write_bytes(b"short")
    with pytest.raises(SealError, match="32 bytes"):
        Sealer.load_or_create(path)
