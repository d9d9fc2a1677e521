"""python -m meshctl.registrator: register Docker containers in Consul as mesh workloads.

It watches the Docker Engine API on its unix socket (the container list, each
container's inspect document and the event stream) and keeps the local Consul
agent's services in step with the running containers, with a full resync every
``--resync-seconds`` so that a missed event or a Consul that lost its state heals.

A container opts in with Registrator's conventions, read from its labels and its
environment (a label wins over an env var of the same name):

- ``SERVICE_NAME`` or ``SERVICE_<port>_NAME``: the service; a container with neither
  is left alone. A ``SERVICE_NAME`` shared by several ports becomes ``<name>-<port>``.
- ``SERVICE_TAGS`` / ``SERVICE_<port>_TAGS``: comma separated; ``key=value`` tags are
  workload labels (or, for the reserved keys, the workload fields), other tags are
  dropped (the mesh catalog shape has no place for them).
- ``SERVICE_<KEY>=value`` / ``SERVICE_<port>_<KEY>=value``: an attribute, key lower-cased;
  ``namespace``, ``service_account``, ``service_port``, ``protocol`` and ``tls_mode`` are
  the workload's fields, any other key is a label. Attributes win over tags, and
  port-specific settings over general ones.
- ``SERVICE_CHECK_HTTP=/path`` (``_CHECK_INTERVAL``, default 10s, ``_CHECK_TIMEOUT``,
  ``_CHECK_DEREGISTER_AFTER``): an HTTP check against ``http://<address>:<port>/path``;
  ``_CHECK_PORT`` (ours, not Registrator's) probes another port of the container
  instead, e.g. the app's own when the registered sidecar port demands mutual TLS.
- ``SERVICE_PROMETHEUS_PORT`` (ours): the port of the sidecar's ``/stats/prometheus``,
  written to ``Meta.prometheus_port`` only (not a tag) for Galley's dashboard.
- ``SERVICE_IGNORE`` / ``SERVICE_<port>_IGNORE``: skip the container / the port.
- ``SERVICE_ID`` is ignored (IDs are the registrator's own, see below), and so are
  Registrator's other check kinds: a container asking for one is reported, not registered.

With ``--internal true`` (the default, Registrator's ``-internal``) each exposed TCP
port is registered at the container's IP on its first network; otherwise each
published TCP port is registered at ``--host-ip`` (or the binding's own host IP).
UDP and SCTP ports are never registered: the mesh carries TCP only.

The body written is `api.catalog.registration_payload`'s, the one `meshctl register`
writes, plus ``Meta.protocol`` when a container sets it. A container whose settings are
not a valid mesh workload is reported in one log line and skipped.

Service IDs are ``registrator:<node>:<container-name>:<port>``, where ``<node>`` is
``--node-name`` (default: the Docker host's name from ``GET /info``). The prefix
``registrator:<node>:`` marks ownership: this process only ever deregisters services
whose ID starts with it, and removes them when their container stops, dies or is
destroyed, or is gone at a resync. Docker or Consul being unreachable is logged in one
line per attempt and retried with backoff; it never ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.addrs import HostPort, split_addr
from api.catalog import (
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE_ACCOUNT,
    DEFAULT_SERVICE_PORT,
    RESERVED_META,
    CatalogError,
    registration_payload,
)
from api.service_cli import SettingsError, load_settings, setup_logging
from meshctl.registration import PROMETHEUS_PORT_META, with_stats

__all__ = [
    "OWNER",
    "Plan",
    "Port",
    "Registrator",
    "RegistratorSettings",
    "Unavailable",
    "build_registration",
    "container_ip",
    "container_name",
    "container_ports",
    "main",
    "owner_prefix",
    "plan_container",
    "service_settings",
]

log = logging.getLogger("meshctl.registrator")

OWNER = "registrator"
DEFAULT_CHECK_INTERVAL = "10s"
# The container events that change what should be registered (health is Consul's job).
WATCHED_EVENTS = ("start", "die", "stop", "destroy", "rename")
_SUPPORTED_CHECK = (
    "check_http",
    "check_port",
    "check_interval",
    "check_timeout",
    "check_deregister_after",
)
_CONTROL = frozenset({"name", "tags", "ignore", "id"})
_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
_NODE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PORT_KEY = re.compile(r"(\d{1,5})/(tcp|udp|sctp)")
_DOCKER_TIMEOUT = aiohttp.ClientTimeout(total=15)
_CONSUL_TIMEOUT = aiohttp.ClientTimeout(total=15)


class RegistratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRATOR_", extra="forbid")

    consul_addr: HostPort = Field(
        "127.0.0.1:8500", description="Consul agent HTTP address, HOST:PORT"
    )
    consul_token: SecretStr = Field(SecretStr(""), description="Consul ACL token ('' = none)")
    docker_socket: str = Field("/var/run/docker.sock", description="Docker Engine API unix socket")
    resync_seconds: float = Field(10.0, gt=0, description="Seconds between full resyncs")
    internal: bool = Field(
        True, description="Register container IPs and exposed ports (Registrator's -internal)"
    )
    host_ip: str = Field(
        "", description="Address for published ports when not internal ('' = the binding's)"
    )
    node_name: str = Field("", description="Node part of service IDs ('' = the Docker host's name)")
    retry_max_seconds: float = Field(
        30.0, gt=0, description="Longest wait between retries while Docker or Consul is down"
    )
    log_level: str = Field("INFO", description="Python logging level")

    @field_validator("node_name")
    @classmethod
    def _is_node(cls, value: str) -> str:
        if value and not _NODE.fullmatch(value):
            raise ValueError("must match [A-Za-z0-9._-]{1,128}")
        return value


# --- From a container's inspect document to registrations (pure) --------------------------


@dataclass(frozen=True, slots=True)
class Port:
    """One port to register: ``exposed`` names it in ``SERVICE_<port>_*`` and in the ID."""

    exposed: int
    address: str
    port: int


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def owner_prefix(node: str) -> str:
    """Every service ID this registrator owns on ``node`` starts with this."""
    return f"{OWNER}:{node}:"


def container_name(container: Mapping[str, Any]) -> str:
    """The container's name without Docker's leading slash ('' when it has none)."""
    name = container.get("Name")
    return name.strip("/") if isinstance(name, str) else ""


def service_settings(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's ``SERVICE_*`` settings: env, overridden by labels."""
    config = _dict(container.get("Config"))
    out: dict[str, str] = {}
    for item in _list(config.get("Env")):
        if isinstance(item, str):
            key, sep, value = item.partition("=")
            if sep and key.startswith("SERVICE_"):
                out[key] = value
    for key, value in _dict(config.get("Labels")).items():
        if isinstance(key, str) and isinstance(value, str) and key.startswith("SERVICE_"):
            out[key] = value
    return out


def _attributes(settings: Mapping[str, str]) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """Registrator's attributes: general ones and, per port, port-specific ones."""
    general: dict[str, str] = {}
    specific: dict[int, dict[str, str]] = {}
    for key, value in settings.items():
        rest = key.removeprefix("SERVICE_")
        head, sep, tail = rest.partition("_")
        if head.isascii() and head.isdigit():
            if sep and tail:
                specific.setdefault(int(head), {})[tail.lower()] = value
        elif rest:
            general[rest.lower()] = value
    return general, specific


def _opted_in(general: Mapping[str, str], specific: Mapping[int, Mapping[str, str]]) -> bool:
    return bool(general.get("name")) or any(attrs.get("name") for attrs in specific.values())


def _exposed_tcp(container: Mapping[str, Any]) -> list[int]:
    keys: set[str] = set()
    for source in (
        _dict(container.get("Config")).get("ExposedPorts"),
        _dict(container.get("NetworkSettings")).get("Ports"),
    ):
        keys.update(k for k in _dict(source) if isinstance(k, str))
    ports: set[int] = set()
    for key in keys:
        match = _PORT_KEY.fullmatch(key)
        if match and match.group(2) == "tcp" and 0 < int(match.group(1)) < 65536:
            ports.add(int(match.group(1)))
    return sorted(ports)


def container_ip(container: Mapping[str, Any]) -> str:
    """The container's IP on its first network ('' when it has none)."""
    net = _dict(container.get("NetworkSettings"))
    for attached in _dict(net.get("Networks")).values():
        ip = _dict(attached).get("IPAddress")
        if isinstance(ip, str) and ip:
            return ip
    ip = net.get("IPAddress")
    return ip if isinstance(ip, str) else ""


def _published(container: Mapping[str, Any], exposed: int, host_ip: str) -> Port | None:
    bindings = _dict(_dict(container.get("NetworkSettings")).get("Ports")).get(f"{exposed}/tcp")
    for binding in _list(bindings):
        port = str(_dict(binding).get("HostPort") or "")
        bound_ip = str(_dict(binding).get("HostIp") or "")
        address = host_ip or ("" if bound_ip in ("", "0.0.0.0", "::") else bound_ip)
        if address and port.isdigit() and 0 < int(port) < 65536:
            return Port(exposed, address, int(port))
    return None


def container_ports(container: Mapping[str, Any], internal: bool, host_ip: str = "") -> list[Port]:
    """The ports Registrator would register: exposed (internal) or published ones."""
    exposed = _exposed_tcp(container)
    if internal:
        ip = container_ip(container)
        return [Port(p, ip, p) for p in exposed] if ip else []
    return [p for p in (_published(container, e, host_ip) for e in exposed) if p is not None]


def _duration(attrs: Mapping[str, str], key: str, default: str) -> str:
    value = attrs.get(key) or default
    if not _DURATION.fullmatch(value):
        raise CatalogError(f"{key} {value!r}: not a duration like 10s or 1m")
    return value


def _check_url(attrs: Mapping[str, str], address: str, port: int) -> str | None:
    unsupported = sorted(k for k in attrs if k.startswith("check_") and k not in _SUPPORTED_CHECK)
    if unsupported:
        raise CatalogError(f"{unsupported[0]}: not supported (only {', '.join(_SUPPORTED_CHECK)})")
    path = attrs.get("check_http")
    if not path:
        return None
    check_port = attrs.get("check_port")
    if check_port is not None:
        # The app's own port: a sidecar port that demands mutual TLS (STRICT) cannot be
        # probed in plain HTTP, so the check goes round it, as Istio's probe rewrite does.
        if not check_port.isdigit() or not 0 < int(check_port) < 65536:
            raise CatalogError(f"check_port {check_port!r}: not a port")
        port = int(check_port)
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/{path.lstrip('/')}"


def _workload_fields(attrs: Mapping[str, str]) -> dict[str, str]:
    """Labels and reserved fields from ``key=value`` tags, then attributes (which win)."""
    fields: dict[str, str] = {}
    for tag in (attrs.get("tags") or "").split(","):
        key, sep, value = tag.strip().partition("=")
        if sep and key:
            fields[key] = value
    for key, value in attrs.items():
        if key not in _CONTROL and not key.startswith("check_"):
            fields[key] = value
    return fields


def _service_port(value: str | None) -> int:
    if not value:
        return DEFAULT_SERVICE_PORT
    if not (value.isascii() and value.isdigit()):
        raise CatalogError(f"service_port {value!r}: not a port number")
    return int(value)


def _mtls(value: str | None) -> bool:
    if value not in (None, "", "istio", "disabled"):
        raise CatalogError(f"tls_mode {value!r}: must be istio or disabled")
    return value == "istio"


def _protocol(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value.lower() not in ("http", "tcp"):
        raise CatalogError(f"protocol {value!r}: must be http or tcp")
    return value.lower()


def build_registration(
    service_id: str, name: str, port: Port, attrs: Mapping[str, str]
) -> dict[str, Any]:
    """The ``PUT /v1/agent/service/register`` body for one port; CatalogError if invalid."""
    fields = _workload_fields(attrs)
    reserved = {key: fields.pop(key) for key in list(fields) if key in RESERVED_META}
    # Meta only, never a label (however api.catalog classes the key).
    stats_port = fields.pop(PROMETHEUS_PORT_META, None) or reserved.pop(PROMETHEUS_PORT_META, None)
    protocol = _protocol(reserved.get("protocol"))
    check_url = _check_url(attrs, port.address, port.port)
    body = registration_payload(
        service=name,
        instance_id=service_id,
        address=port.address,
        port=port.port,
        namespace=reserved.get("namespace") or DEFAULT_NAMESPACE,
        service_account=reserved.get("service_account") or DEFAULT_SERVICE_ACCOUNT,
        service_port=_service_port(reserved.get("service_port")),
        labels=fields,
        check_http=check_url,
        check_interval=_duration(attrs, "check_interval", DEFAULT_CHECK_INTERVAL),
        mtls=_mtls(reserved.get("tls_mode")),
    )
    if protocol:
        body["Meta"]["protocol"] = protocol
    if stats_port is not None:
        if not (stats_port.isascii() and stats_port.isdigit()):
            raise CatalogError(f"prometheus_port {stats_port!r}: not a port number")
        body = with_stats(body, int(stats_port))
    if "Check" in body:
        check = body["Check"]
        check["Timeout"] = _duration(attrs, "check_timeout", check["Timeout"])
        deregister_after = check["DeregisterCriticalServiceAfter"]
        check["DeregisterCriticalServiceAfter"] = _duration(
            attrs, "check_deregister_after", deregister_after
        )
    return body


@dataclass(frozen=True, slots=True)
class Plan:
    """What one container should have in Consul, and what is wrong with the rest of it."""

    registrations: dict[str, dict[str, Any]]
    problems: list[str]


def plan_container(
    container: Mapping[str, Any], node: str, *, internal: bool = True, host_ip: str = ""
) -> Plan:
    """The registrations of one container (its inspect document), keyed by service ID."""
    settings = service_settings(container)
    general, specific = _attributes(settings)
    name = container_name(container)
    if not _opted_in(general, specific) or general.get("ignore") or not name:
        return Plan({}, [])
    ports = container_ports(container, internal, host_ip)
    if not ports:
        where = "exposed TCP port on a network" if internal else "published TCP port"
        return Plan({}, [f"container {name}: opts in but has no {where}"])
    registrations: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for port in ports:
        attrs = {**general, **specific.get(port.exposed, {})}
        own_name = specific.get(port.exposed, {}).get("name")
        service = own_name or general.get("name")
        if not service or attrs.get("ignore"):
            continue
        if not own_name and len(ports) > 1:
            service = f"{service}-{port.exposed}"
        service_id = f"{owner_prefix(node)}{name}:{port.exposed}"
        try:
            registrations[service_id] = build_registration(service_id, service, port, attrs)
        except CatalogError as err:
            problems.append(f"container {name} port {port.exposed}: {err}")
    return Plan(registrations, problems)


# --- Docker and Consul over HTTP ----------------------------------------------------------


class Unavailable(Exception):
    """Docker or Consul did not answer, or answered nonsense: try again later."""


class Rejected(Exception):
    """Consul refused one registration (400): retrying the same body will not help."""


class DockerClient:
    """The few Docker Engine API calls the registrator needs, over its unix socket."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.UnixConnector(path=self.socket_path)
            self._session = aiohttp.ClientSession(
                base_url="http://docker", connector=connector, timeout=_DOCKER_TIMEOUT
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _down(self, err: object) -> Unavailable:
        return Unavailable(f"docker at {self.socket_path}: {err or type(err).__name__}")

    async def _get(self, path: str, missing_ok: bool = False) -> Any:
        try:
            async with self.session.get(path) as resp:
                if resp.status == 404 and missing_ok:
                    return None
                if resp.status != 200:
                    raise self._down(f"GET {path}: HTTP {resp.status}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as err:
            raise self._down(err) from None

    async def host_name(self) -> str:
        name = _dict(await self._get("/info")).get("Name")
        return name if isinstance(name, str) else ""

    async def running(self) -> list[str]:
        """IDs of the running containers."""
        ids = [_dict(c).get("Id") for c in _list(await self._get("/containers/json"))]
        return [i for i in ids if isinstance(i, str) and i]

    async def inspect(self, container_id: str) -> Mapping[str, Any] | None:
        """The container's inspect document; None when it no longer exists."""
        found = await self._get(f"/containers/{quote(container_id, safe='')}/json", True)
        return _dict(found) if found is not None else None

    @contextlib.asynccontextmanager
    async def events(self) -> AsyncIterator[aiohttp.StreamReader]:
        """The container event stream, newline-delimited JSON."""
        filters = json.dumps({"type": ["container"], "event": list(WATCHED_EVENTS)})
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=None)
        try:
            resp = await self.session.get("/events", params={"filters": filters}, timeout=timeout)
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise self._down(err) from None
        try:
            if resp.status != 200:
                raise self._down(f"GET /events: HTTP {resp.status}")
            yield resp.content
        finally:
            resp.release()


class ConsulAgent:
    """The local Consul agent's service endpoints."""

    def __init__(self, addr: str, token: str = "") -> None:
        host, port = split_addr(addr)
        self.addr = addr
        self._base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self._headers = {"X-Consul-Token": token} if token else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self._base, headers=self._headers, timeout=_CONSUL_TIMEOUT
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, path: str, body: Any = None, missing_ok: bool = False
    ) -> Any:
        try:
            async with self.session.request(method, path, json=body) as resp:
                text = await resp.text()
                if resp.status == 404 and missing_ok:
                    return None
                if resp.status == 400:
                    raise Rejected(text.strip()[:200])
                if resp.status != 200:
                    raise Unavailable(f"consul at {self.addr}: {method} {path}: HTTP {resp.status}")
                return json.loads(text) if method == "GET" else None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as err:
            raise Unavailable(f"consul at {self.addr}: {err or type(err).__name__}") from None

    async def services(self) -> dict[str, Mapping[str, Any]]:
        found = _dict(await self._call("GET", "/v1/agent/services"))
        return {k: _dict(v) for k, v in found.items() if isinstance(k, str)}

    async def register(self, body: Mapping[str, Any]) -> None:
        await self._call("PUT", "/v1/agent/service/register", body)

    async def deregister(self, service_id: str) -> None:
        path = f"/v1/agent/service/deregister/{quote(service_id, safe='')}"
        await self._call("PUT", path, missing_ok=True)  # 404: already gone


# --- The loop ------------------------------------------------------------------------------


def _same(current: Mapping[str, Any] | None, body: Mapping[str, Any]) -> bool:
    """Whether the agent's service is the one ``body`` registers (checks aside)."""
    if current is None:
        return False
    seen = (current.get("Service"), current.get("Address"), current.get("Port"))
    meant = (body["Name"], body["Address"], body["Port"])
    tags, meta = list(current.get("Tags") or []), dict(current.get("Meta") or {})
    return seen == meant and tags == body["Tags"] and meta == body["Meta"]


def _event_target(event: Mapping[str, Any]) -> tuple[str, str, str]:
    """(action, container id, container name) of a Docker event; '' for what is missing."""
    actor = _dict(event.get("Actor"))
    action = event.get("Action") or event.get("status")
    cid = actor.get("ID") or event.get("id")
    name = _dict(actor.get("Attributes")).get("name")
    return _text(action), _text(cid), _text(name)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class _Backoff:
    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.delay = 0.0

    def next(self) -> float:
        self.delay = min(self.cap, max(self.delay * 2, min(1.0, self.cap)))
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


class Registrator:
    """Keeps Consul's services in step with Docker's running, opted-in containers."""

    def __init__(self, settings: RegistratorSettings) -> None:
        self.settings = settings
        self.docker = DockerClient(settings.docker_socket)
        self.consul = ConsulAgent(settings.consul_addr, settings.consul_token.get_secret_value())
        self.node = settings.node_name
        self.failures = 0  # failed attempts so far (Docker or Consul unreachable)
        self.syncs = 0  # completed full resyncs
        self._sent: dict[str, dict[str, Any]] = {}  # what we last registered, by service ID
        self._reported: set[str] = set()  # problems already logged
        self._round: set[str] = set()  # problems seen since the last full sync began

    async def run(self) -> None:
        """Sync, follow events and resync forever; outages are waited out."""
        backoff = _Backoff(self.settings.retry_max_seconds)
        try:
            while True:
                try:
                    await self._watch(backoff)
                except Unavailable as err:
                    self.failures += 1
                    delay = backoff.next()
                    log.warning("%s; retrying in %.1fs", err, delay)
                    await asyncio.sleep(delay)
        finally:
            await self.docker.close()
            await self.consul.close()

    async def _watch(self, backoff: _Backoff) -> None:
        # Subscribe before the first sync so that nothing between the two is missed.
        async with self.docker.events() as stream:
            queue: asyncio.Queue[Mapping[str, Any] | Unavailable] = asyncio.Queue()
            pump = asyncio.create_task(self._pump(stream, queue))
            try:
                await self.sync_all()
                if backoff.delay:
                    log.info("docker and consul reachable again")
                backoff.reset()
                await self._follow(queue)
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    async def _pump(
        self, stream: aiohttp.StreamReader, queue: asyncio.Queue[Mapping[str, Any] | Unavailable]
    ) -> None:
        try:
            async for line in stream:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, Mapping):
                        queue.put_nowait(event)
            end = Unavailable(f"docker at {self.docker.socket_path}: the event stream ended")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as err:
            end = Unavailable(f"docker at {self.docker.socket_path}: event stream: {err}")
        queue.put_nowait(end)

    async def _follow(self, queue: asyncio.Queue[Mapping[str, Any] | Unavailable]) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.settings.resync_seconds
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), max(0.0, due - loop.time()))
            except TimeoutError:
                await self.sync_all()
                due = loop.time() + self.settings.resync_seconds
                continue
            if isinstance(item, Unavailable):
                raise item
            await self._on_event(item)

    async def _on_event(self, event: Mapping[str, Any]) -> None:
        action, cid, name = _event_target(event)
        log.debug("docker event %s %s (%s)", action, name, cid[:12])
        if action not in WATCHED_EVENTS or not cid:
            return
        if action == "rename" or not name:
            await self.sync_all()
        else:
            await self.sync_container(cid, name)

    async def _node_name(self) -> str:
        if not self.node:
            raw = await self.docker.host_name() or socket.gethostname()
            self.node = re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:128] or "docker"
            log.info("service IDs are %s<container>:<port>", owner_prefix(self.node))
        return self.node

    def _plan(self, container: Mapping[str, Any]) -> Plan:
        plan = plan_container(
            container,
            self.node,
            internal=self.settings.internal,
            host_ip=self.settings.host_ip,
        )
        for problem in plan.problems:
            self._note(f"{problem}: not registered")
        return plan

    def _note(self, problem: str) -> None:
        """Log a problem once, for as long as it lasts."""
        if problem not in self._reported:
            log.warning("%s", problem)
        self._reported.add(problem)
        self._round.add(problem)

    async def sync_all(self) -> None:
        """Make Consul's owned services exactly the running containers' registrations."""
        prefix = owner_prefix(await self._node_name())
        desired: dict[str, dict[str, Any]] = {}
        self._round = set()
        for cid in await self.docker.running():
            container = await self.docker.inspect(cid)
            if container is not None and _dict(container.get("State")).get("Running") is True:
                desired.update(self._plan(container).registrations)
        await self._apply(desired, prefix)
        self._reported = self._round  # a problem that goes away and comes back is logged again
        self.syncs += 1

    async def sync_container(self, container_id: str, name: str) -> None:
        """Bring one container's registrations up to date (after one of its events)."""
        await self._node_name()
        container = await self.docker.inspect(container_id)
        desired: dict[str, dict[str, Any]] = {}
        if container is not None and _dict(container.get("State")).get("Running") is True:
            name = container_name(container) or name
            desired = self._plan(container).registrations
        await self._apply(desired, f"{owner_prefix(self.node)}{name.strip('/')}:")

    async def _apply(self, desired: Mapping[str, dict[str, Any]], prefix: str) -> None:
        current = await self.consul.services()
        for service_id in sorted(s for s in current if s.startswith(prefix) and s not in desired):
            await self.consul.deregister(service_id)
            log.info("deregistered %s", service_id)
        for service_id in [s for s in self._sent if s.startswith(prefix) and s not in desired]:
            del self._sent[service_id]
        for service_id, body in sorted(desired.items()):
            if self._sent.get(service_id) == body and _same(current.get(service_id), body):
                continue
            try:
                await self.consul.register(body)
            except Rejected as err:
                self._note(f"{service_id}: consul refused it: {err}")
                continue
            self._sent[service_id] = body
            log.info("registered %s (%s at %s:%s)", service_id, *_where(body))


def _where(body: Mapping[str, Any]) -> Iterable[Any]:
    return (f"{body['Name']}.{body['Meta']['namespace']}", body["Address"], body["Port"])


async def _serve(settings: RegistratorSettings) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    with contextlib.suppress(asyncio.CancelledError):
        await Registrator(settings).run()
    log.info("registrator stopped")


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(
            RegistratorSettings,
            sys.argv[1:] if argv is None else argv,
            "python -m meshctl.registrator",
            __doc__,
        )
    except SettingsError:
        return 2
    setup_logging(settings.log_level)
    asyncio.run(_serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
