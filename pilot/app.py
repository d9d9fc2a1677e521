"""Pilot wired together: registry -> debouncer -> snapshot -> ADS server."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import grpc

from api.addrs import split_addr
from api.resources import Resource
from api.security.request_authentication import RequestAuthenticationSpec
from pilot import quarantine
from pilot.clock import Clock, MonotonicClock
from pilot.config import ConfigSource
from pilot.config.consul import ConsulConfigSource
from pilot.debounce import Batch, Debouncer
from pilot.heap import HeapTrimmer, libc_trim
from pilot.http import DebugServer
from pilot.jwks import JwksResolver
from pilot.metrics import Metrics
from pilot.model import MeshConfig, MeshSnapshot, ServiceKey
from pilot.networking import authz
from pilot.registry import OnChange, Registry
from pilot.registry.consul import ConsulRegistry
from pilot.settings import PilotSettings
from pilot.xds.cds import ClusterGenerator
from pilot.xds.context import Change, PushContext, diff
from pilot.xds.ecds import ExtensionConfigGenerator
from pilot.xds.eds import EndpointGenerator
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from pilot.xds.server import AdsServer

__all__ = ["GRPC_SERVER_OPTIONS", "Pilot"]

log = logging.getLogger(__name__)

GRPC_SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    # A reconnect storm of thousands of proxies must not get calls cancelled.
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 200_000),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
]


def _jwks_uris(config: Sequence[Resource]) -> list[str]:
    specs = [
        r.spec_as(RequestAuthenticationSpec) for r in config if r.kind == "RequestAuthentication"
    ]
    return [
        rule.jwks_uri
        for spec in specs
        for rule in (spec.jwt_rules or [])
        if rule is not None and rule.jwks_uri  # a null rule is refused by validation
    ]


def _tls_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials:
    with open(key_file, "rb") as key, open(cert_file, "rb") as chain:
        return grpc.ssl_server_credentials([(key.read(), chain.read())])


class Pilot:
    def __init__(
        self,
        settings: PilotSettings,
        *,
        clock: Clock | None = None,
        registry_factory: Callable[[OnChange, Metrics], Registry] | None = None,
        config_factory: Callable[[OnChange, Metrics], ConfigSource] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.clock = clock or MonotonicClock()
        self.debouncer = Debouncer(settings.debounce_quiet, settings.debounce_max, self.clock)
        self.ads = AdsServer(
            [
                ClusterGenerator(),
                EndpointGenerator(),
                ExtensionConfigGenerator(),
                ListenerGenerator(),
                RouteGenerator(),
            ],
            self.metrics,
            clock=self.clock.now,
        )
        if registry_factory is None:

            def registry_factory(on_change: OnChange, metrics: Metrics) -> Registry:
                return ConsulRegistry(
                    settings.consul_addr, on_change, metrics, wait=settings.consul_wait
                )

        if config_factory is None:

            def config_factory(on_change: OnChange, metrics: Metrics) -> ConfigSource:
                return ConsulConfigSource(
                    settings.consul_addr, on_change, metrics, wait=settings.consul_wait
                )

        self.registry = registry_factory(self.debouncer.add, self.metrics)
        self.config = config_factory(self.debouncer.add, self.metrics)
        self.jwks = JwksResolver(self.debouncer.add)
        self._snapshot: MeshSnapshot | None = None
        self._last_good_config: list[Resource] = []  # what the last published snapshot used
        self._left_out: set[str] = set()  # refs of config that breaks the build, reported
        self._mesh = MeshConfig(
            settings.trust_domain,
            settings.root_namespace,
            settings.access_log_file,
            settings.access_log_format,
            settings.zipkin_addr,
            settings.trace_sampling,
            settings.extension_providers(),
        )
        self._versions = itertools.count(1)
        self.ready = asyncio.Event()  # the first snapshot is published
        self.grpc_port = 0
        self.tls_grpc_port = 0
        self.http_port = 0

    @property
    def snapshot(self) -> MeshSnapshot | None:
        return self._snapshot

    async def push_or_keep(self, batch: Batch) -> None:
        """`push`, and when building the snapshot fails even without the config that
        breaks it (see `quarantine`), keep serving the last good one and go on: the
        next change is pushed as usual. Never let one push end Pilot."""
        try:
            await self.push(batch)
        except Exception:
            self.metrics.push_failures.inc()
            log.exception(
                "push failed (%s); proxies keep the last config they were sent",
                ", ".join(sorted(batch.reasons)),
            )

    async def push(self, batch: Batch) -> None:
        """Build a snapshot from the registry and publish what changed."""
        if not (self.registry.synced.is_set() and self.config.synced.is_set()):
            return  # the first snapshot waits for both the catalog and the config
        began = time.perf_counter()
        config = self.config.resources()
        self.jwks.want(_jwks_uris(config))
        version, instances, keys = next(self._versions), self.registry.instances(), self.jwks.keys()

        def build(resources: list[Resource]) -> tuple[MeshSnapshot, PushContext]:
            snap = MeshSnapshot.build(version, instances, resources, self._mesh, keys)
            return snap, PushContext.build(snap, self.ads.context)

        admitted = quarantine.admit(build, config, self._last_good_config)
        snapshot, ctx = admitted.built
        self._report_left_out(admitted.left_out)
        if admitted.left_out:
            snapshot = replace(
                snapshot,
                withheld=(
                    *snapshot.withheld,
                    *(
                        f"{r.ref}: left out, it breaks the build ({e})"
                        for r, e in admitted.left_out
                    ),
                ),
            )
        config = admitted.config
        change = diff(self._snapshot, snapshot, started=batch.first)
        if change is None:
            if self._snapshot is not None and self._snapshot.withheld != snapshot.withheld:
                # Nothing for proxies, but what is left out (and reported) changed.
                self._snapshot = replace(self._snapshot, withheld=snapshot.withheld)
            return
        withheld: set[ServiceKey] = set()
        while problems := ctx.consistent(
            {c.proxy.namespace for c in self.ads.connections.values()}
        ):
            # An alarm, not a gate: conflicts are resolved when the snapshot is built, so
            # this is a bug to report; withhold only the services involved and push the rest.
            # Each round withholds more services, so this ends; a problem no service
            # explains cannot be withheld, and only then is the snapshot refused.
            self.metrics.inconsistent.inc()
            involved = {k for p in problems for k in p.services} - withheld
            if not involved:
                log.error(
                    "snapshot %d refused: inconsistent beyond its services, config kept: %s",
                    snapshot.version,
                    "; ".join(map(str, problems)),
                )
                return
            log.error(
                "snapshot %d: consistency check failed, withholding the services involved: %s",
                snapshot.version,
                "; ".join(map(str, problems)),
            )
            withheld |= involved
            snapshot = snapshot.without(involved, [p.message for p in problems])
            ctx = PushContext.build(snapshot, self.ads.context)
            change = Change(full=True, started=batch.first)
        if change.full:
            old = self._snapshot
            if old is None or old.config.resources != snapshot.config.resources:
                self._report_untranslatable(snapshot)  # depends on the config alone
            self._report_conflicts(snapshot)
        self._snapshot = snapshot
        self._last_good_config = config
        self.ads.config_status.published(snapshot.version, config)
        self.ads.publish(ctx, change)
        self.metrics.snapshots.inc()
        self.metrics.services.set(len(snapshot.services))
        self.metrics.config_resources.set(len(config))
        self.metrics.endpoints.set(sum(len(s.instances) for s in snapshot.services.values()))
        self.metrics.push_seconds.observe(time.perf_counter() - began)
        self.ready.set()
        log.info(
            "snapshot %d: %d services, %s push to %d proxies (%s)",
            snapshot.version,
            len(snapshot.services),
            "full" if change.full else "endpoint",
            len(self.ads.connections),
            ", ".join(sorted(batch.reasons)),
        )

    def _report_untranslatable(self, snapshot: MeshSnapshot) -> None:
        failed = authz.untranslatable(snapshot.config.of("AuthorizationPolicy"))
        self.metrics.authz_failed_closed.set(len(failed))
        for line in failed:
            log.warning("authorization rule fails closed: %s", line)

    def _report_left_out(self, left_out: list[tuple[Resource, str]]) -> None:
        refs = {r.ref for r, _ in left_out}
        self.metrics.left_out.set(len(refs))
        for resource, error in left_out:
            if resource.ref not in self._left_out:
                log.error(
                    "%s left out: building the snapshot with it raised %s (a bug: validation "
                    "should have refused it); the rest of the mesh is pushed",
                    resource.ref,
                    error,
                )
        self._left_out = refs

    def _report_conflicts(self, snapshot: MeshSnapshot) -> None:
        self.metrics.conflicts.set(len(snapshot.conflicts))
        old = set(self._snapshot.conflicts) if self._snapshot is not None else set()
        for conflict in snapshot.conflicts:
            if conflict not in old:
                log.warning("config conflict: %s", conflict)

    async def run(self, started: asyncio.Event | None = None) -> None:
        """Serve until cancelled; `started` is set once both ports listen."""
        server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)
        server.add_generic_rpc_handlers((self.ads.rpc_handlers(),))
        grpc_host, grpc_port = split_addr(self.settings.grpc_addr)
        self.grpc_port = server.add_insecure_port(f"{grpc_host}:{grpc_port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot listen for xDS on {self.settings.grpc_addr}")
        s = self.settings
        if s.tls_grpc_addr:
            if not (s.tls_cert_file and s.tls_key_file):
                raise OSError("tls_grpc_addr needs tls_cert_file and tls_key_file")
            creds = _tls_credentials(s.tls_cert_file, s.tls_key_file)
            self.tls_grpc_port = server.add_secure_port(s.tls_grpc_addr, creds)
            if self.tls_grpc_port == 0:
                raise OSError(f"cannot listen for xDS over TLS on {s.tls_grpc_addr}")
        debug = DebugServer(self)
        await server.start()
        try:
            self.http_port = await debug.start(*split_addr(self.settings.http_addr))
            log.info(
                "pilot serving xDS on %s:%d, HTTP on %d", grpc_host, self.grpc_port, self.http_port
            )
            if started is not None:
                started.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.registry.run())
                tg.create_task(self.config.run())
                tg.create_task(self.jwks.run())
                tg.create_task(self.debouncer.run(self.push_or_keep))
                tg.create_task(HeapTrimmer(lambda: self.ads.streams.requests, libc_trim()).run())
        finally:
            await debug.stop()
            await server.stop(grace=1.0)
