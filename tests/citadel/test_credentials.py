"""The checks every gateway credential passes, from an admin or read back from Consul."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from citadel.credentials import (
    CredentialError,
    CredentialMap,
    credential_from_document,
    credential_warnings,
    to_document,
)
from tests.citadel.helpers import DAY, NOW, key_body, make_ca, make_server, tls_doc

CA = make_ca()
SERVER = make_server(CA)
OTHER = make_server(CA, "other.example.com")


def test_a_tls_credential_is_kept_in_canonical_pem_and_round_trips() -> None:
    noisy = {**tls_doc(SERVER, CA), "cert": "Bag Attributes: x\n" + SERVER.cert_pem}
    cred = credential_from_document("shop", "web-cert", noisy)
    assert cred.type == "tls" and cred.cert_chain_pem == SERVER.cert_pem.encode()
    assert cred.ca_pem == CA.cert_pem.encode()
    assert cred.not_after == SERVER.cert.not_valid_after_utc
    assert credential_from_document("shop", "web-cert", to_document(cred)) == cred
    assert key_body(cred.key_pem) not in repr(cred)  # a logged credential shows no key


def test_a_generic_credential_is_a_ca_bundle_expiring_with_its_first_cert_to_expire() -> None:
    short = make_server(CA, "short", not_after=NOW + DAY)
    cred = credential_from_document(
        "shop", "web-cert-cacert", {"type": "generic", "caCert": CA.cert_pem + short.cert_pem}
    )
    assert (cred.type, cred.cert_chain_pem, cred.key_pem) == ("generic", b"", b"")
    assert cred.not_after == short.cert.not_valid_after_utc
    assert to_document(cred) == {"type": "generic", "caCert": CA.cert_pem + short.cert_pem}


def _encrypted_key() -> str:
    return SERVER.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()


def _key_pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


SMALL_RSA = rsa.generate_private_key(public_exponent=65537, key_size=1024)
K1 = ec.generate_private_key(ec.SECP256K1())


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ([], "body", "JSON object"),
        ({}, "type", '"tls" or "generic"'),
        ({"type": "opaque"}, "type", '"tls" or "generic"'),
        ({"type": ["tls"]}, "type", '"tls" or "generic"'),
        ({**tls_doc(SERVER), "extra": "x"}, "extra", "unknown field"),
        ({**tls_doc(SERVER), "ca_cert": "x"}, "ca_cert", "unknown field"),
        ({"type": "tls", "key": SERVER.key_pem}, "cert", "required"),
        ({"type": "tls", "cert": SERVER.cert_pem}, "key", "required"),
        ({"type": "generic"}, "caCert", "required"),
        ({"type": "generic", "caCert": CA.cert_pem, "cert": "x"}, "cert", "unknown field"),
        ({**tls_doc(SERVER), "cert": 5}, "cert", "must be a string"),
        ({**tls_doc(SERVER), "key": None}, "key", "must be a string"),
        ({**tls_doc(SERVER), "caCert": {"a": 1}}, "caCert", "must be a string"),
        ({**tls_doc(SERVER), "cert": "not a cert"}, "cert", "not a PEM certificate"),
        ({**tls_doc(SERVER), "cert": "\ud800"}, "cert", "not PEM text"),
        ({**tls_doc(SERVER), "key": "not a key"}, "key", "not a PEM private key"),
        ({**tls_doc(SERVER), "key": _encrypted_key()}, "key", "encrypted"),
        ({**tls_doc(SERVER), "key": OTHER.key_pem}, "key", "does not match"),
        ({**tls_doc(SERVER), "caCert": "nope"}, "caCert", "not a PEM certificate"),
        (
            tls_doc(make_server(CA, key=SMALL_RSA)),
            "key",
            "RSA (2048 bits or more) or ECDSA",
        ),
        ({**tls_doc(SERVER), "key": _key_pem(K1)}, "key", "RSA (2048 bits or more) or ECDSA"),
    ],
)
def test_each_bad_field_is_named(doc: Any, field: str, message: str) -> None:
    with pytest.raises(CredentialError) as info:
        credential_from_document("shop", "web-cert", doc)
    assert info.value.field == field and message in str(info.value)
    assert key_body(SERVER.key_pem) not in str(info.value)


@pytest.mark.parametrize(
    ("namespace", "name", "field"),
    [
        ("Shop", "a", "namespace"),
        ("a.b", "a", "namespace"),
        ("shop", "A", "name"),
        ("s", "", "name"),
    ],
)
def test_bad_names_are_named(namespace: str, name: str, field: str) -> None:
    with pytest.raises(CredentialError) as info:
        credential_from_document(namespace, name, tls_doc(SERVER))
    assert info.value.field == field


def test_rsa_keys_are_served_too() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cred = credential_from_document("shop", "rsa", tls_doc(make_server(CA, key=key)))
    assert cred.type == "tls"


def test_expired_and_future_certs_are_accepted_with_warnings() -> None:
    old = make_server(CA, not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    cred = credential_from_document("shop", "old", tls_doc(old))
    assert any("expired" in w for w in credential_warnings(cred, NOW))
    future = make_server(CA, not_before=NOW + DAY)
    cred = credential_from_document("shop", "future", tls_doc(future))
    assert any("not valid before" in w for w in credential_warnings(cred, NOW))
    cred = credential_from_document("shop", "web-cacert", tls_doc(SERVER))
    assert any("CA bundle of 'web'" in w for w in credential_warnings(cred, NOW))
    assert credential_warnings(credential_from_document("shop", "ok", tls_doc(SERVER)), NOW) == []


async def test_the_map_wakes_only_the_namespace_that_changed() -> None:
    creds = CredentialMap()
    shop, other = asyncio.Event(), asyncio.Event()
    creds.watch("shop", shop)
    creds.watch("other", other)
    cred = dataclasses.replace(
        credential_from_document("shop", "web", tls_doc(SERVER)), revision="1"
    )
    creds.put(cred)
    assert shop.is_set() and not other.is_set() and creds.get("shop", "web") == cred
    shop.clear()
    creds.put(cred)  # the same revision: nothing changed
    assert not shop.is_set()
    creds.put(dataclasses.replace(cred, revision="2"))
    assert shop.is_set()
    shop.clear()
    creds.remove("shop", "web")
    assert shop.is_set() and creds.get("shop", "web") is None and len(creds) == 0
    creds.unwatch("shop", shop)
    creds.unwatch("other", other)
    assert creds._watchers == {}
