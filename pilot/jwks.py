"""Fetching the JWKS that RequestAuthentications name by URI, as istiod does.

Pilot fetches each jwksUri itself (so sidecars need no route to the issuer),
keeps the last good copy, refreshes it periodically, and triggers a push when
it changes. Until a URI has been fetched, tokens for it are checked against a
key nobody holds: they fail (401) rather than pass unchecked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping

import aiohttp

from api.security.jwt import check_jwks

__all__ = ["UNFETCHED_JWKS", "JwksResolver"]

log = logging.getLogger(__name__)

# A well-formed RSA public key whose private half was never kept: verifies no token.
UNFETCHED_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "kid": "meshpy-unfetched",
                "alg": "RS256",
                "use": "sig",
                "e": "AQAB",
                "n": (
                    "4DBdxXEJZoOHjhWrtY6dSmghmHJKpaRQ_eYfOMiTC1z3Mh0u39yBSWYSi2k8KCIAuRrLvifoXiCP_67a"
                    "66F24AnPi1VSam-jI4cPpE_tCLJRJ-7Q2A0gv6PqAKeZJRA4c7I8kW_gyMLdJGsevatfUip0PrjDLaJy"
                    "tlJt4lglxymIm9p-JeVgLhvk0k3EjAPuM4kUY0qerGHEKv52ULtwox6jExpelTXAFhZi782PyRoYgO8v"
                    "eycRBI-d6bE2T5YywVCHYXVhzaHHvQK0kmpMmxVqP0iqUdlsIi4KU3-9Qiec3GEI4iepi5q82ZDmn9Rw"
                    "2NsB02fewsrGn-0QYDUqxQ"
                ),
            }
        ]
    }
)


class JwksResolver:
    def __init__(
        self, on_change: Callable[[str], None], *, refresh: float = 1200.0, timeout: float = 5.0
    ) -> None:
        self._on_change = on_change
        self._refresh = refresh
        self._timeout = timeout
        self._known: dict[str, str] = {}
        self._wanted: set[str] = set()
        self._wake = asyncio.Event()

    def keys(self) -> Mapping[str, str]:
        return dict(self._known)

    def want(self, uris: Iterable[str]) -> None:
        """The URIs the current config names; new ones are fetched right away."""
        wanted = set(uris)
        if wanted - self._wanted:
            self._wake.set()
        self._wanted = wanted

    async def _fetch(self, session: aiohttp.ClientSession, uri: str) -> None:
        try:
            async with session.get(uri, timeout=aiohttp.ClientTimeout(total=self._timeout)) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                errors, _ = check_jwks(text)  # what Galley checks inline JWKS with
                if errors:
                    raise ValueError("; ".join(errors))  # Envoy would refuse it: keep the old
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            log.warning(
                "fetching JWKS %s failed: %s (keeping %s)",
                uri,
                err,
                "the last good copy" if uri in self._known else "tokens unverifiable",
            )
            return
        if self._known.get(uri) != text:
            self._known[uri] = text
            self._on_change(f"jwks {uri}")

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                missing = [u for u in self._wanted if u not in self._known]
                await asyncio.gather(*(self._fetch(session, u) for u in missing))
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._refresh)
                except TimeoutError:
                    await asyncio.gather(*(self._fetch(session, u) for u in self._wanted))
