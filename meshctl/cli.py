"""meshctl: generate Envoy bootstraps, register workloads, run a local mesh.

Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from api.addrs import split_addr
from api.catalog import DEFAULT_NAMESPACE, CatalogError, registration_payload
from meshctl.registration import from_group, read_group, register, with_stats

__all__ = ["main"]


class CliError(Exception):
    """A failure to report as one line; exit status 1."""


def _addr(value: str) -> tuple[str, int]:
    try:
        host, port = split_addr(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if port == 0:
        raise argparse.ArgumentTypeError(f"{value!r}: port 0 is not a port to connect to")
    return host, port


def _addrs(value: str) -> list[tuple[str, int]]:
    return [_addr(entry) for entry in value.split(",")]


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (1..65535)")
    return int(value)


def _duration(value: str) -> float:
    """'30s', '2m', '500ms' or plain seconds -> seconds (> 0)."""
    text = value.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            number, factor = text[: -len(suffix)], scale
            break
    else:
        number, factor = text, 1.0
    try:
        seconds = float(number) * factor
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 86_400 * 7:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration such as 30s, 2m or 500ms")
    return seconds


def _label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r} is not KEY=VALUE")
    return key, val


def _consul_errors() -> tuple[type[Exception], ...]:
    """What a failed call to Consul raises. py-consul and requests are imported on use:
    every other command (apply, get, ...) starts faster without them."""
    import consul
    import requests

    return (consul.ConsulException, requests.RequestException)


def _registration_fields(args: argparse.Namespace) -> tuple[str, str, dict[str, str]]:
    """(namespace, service account, labels) to register: the flags', or with
    --workload-group, the group's template merged with them (see `from_group`)."""
    namespace, labels = args.namespace, dict(args.label)
    if not args.workload_group:
        return namespace, args.service_account, labels
    group_ns, _, name = args.workload_group.rpartition("/")
    if group_ns and namespace not in (DEFAULT_NAMESPACE, group_ns):
        raise CatalogError(f"namespace {namespace!r}: the WorkloadGroup is in {group_ns!r}")
    namespace = group_ns or namespace
    try:
        group = read_group(args.consul_addr[0], args.consul_addr[1], namespace, name)
    except _consul_errors() as err:
        raise CliError(f"consul at {args.consul_addr[0]}:{args.consul_addr[1]}: {err}") from err
    fields = from_group(group, args.service_account, labels)
    return namespace, fields.service_account, fields.labels


def _locality_args(p: argparse.ArgumentParser, region_default: str) -> None:
    """Where the workload runs: priorities and weights of locality load balancing."""
    p.add_argument("--region", default="", help=f"locality region ({region_default})")
    p.add_argument("--zone", default="", help="locality zone")
    p.add_argument("--subzone", default="", help="locality subzone (needs --zone)")


def cmd_register(args: argparse.Namespace) -> int:
    try:
        namespace, service_account, labels = _registration_fields(args)
        body = registration_payload(
            service=args.service,
            instance_id=args.id,
            address=args.address,
            port=args.port,
            namespace=namespace,
            service_account=service_account,
            service_port=args.service_port,
            labels=labels,
            check_http=args.check_http,
            check_interval=args.check_interval,
            mtls=args.mtls,
            region=args.region,
            zone=args.zone,
            subzone=args.subzone,
            protocol=args.protocol,
        )
        body = with_stats(body, args.stats_port)
    except CatalogError as err:
        raise CliError(str(err)) from err
    try:
        register(args.consul_addr[0], args.consul_addr[1], body)
    except _consul_errors() as err:
        raise CliError(f"consul at {args.consul_addr[0]}:{args.consul_addr[1]}: {err}") from err
    print(f"registered {body['ID']} ({body['Name']}.{namespace} at {args.address}:{args.port})")
    return 0


def cmd_deregister(args: argparse.Namespace) -> int:
    import consul

    client = consul.Consul(host=args.consul_addr[0], port=args.consul_addr[1])
    try:
        client.agent.service.deregister(args.id)
    except _consul_errors() as err:
        raise CliError(f"consul at {args.consul_addr[0]}:{args.consul_addr[1]}: {err}") from err
    print(f"deregistered {args.id}")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from api.gateway_api.translate import GATEWAY_LABEL
    from meshctl.bootstrap import SidecarBootstrap, render_yaml

    if (args.inbound_port is None) != (args.app_port is None):
        raise CliError("--inbound-port and --app-port go together")
    labels = dict(args.label)
    if args.gateway:
        if args.inbound_port is not None or args.outbound_port is not None:
            raise CliError(
                "a gateway has no --outbound-port/--inbound-port: its Gateways say its ports"
            )
        labels.setdefault("istio", args.gateway)
        # How a Gateway API Gateway of that name (in this namespace) selects it.
        labels.setdefault(GATEWAY_LABEL, args.gateway)
    elif args.outbound_port is None:
        raise CliError("--outbound-port is required for a sidecar")
    ports = [p for p in (args.admin_port, args.outbound_port, args.inbound_port) if p is not None]
    if len(set(ports)) != len(ports):
        raise CliError("--admin-port, --outbound-port and --inbound-port must differ")
    if (args.zone or args.subzone) and not args.region:
        raise CliError(
            "--zone needs --region: the region instances have (their Consul datacenter, "
            "e.g. dc1, unless registered with --region)"
        )
    if args.subzone and not args.zone:
        raise CliError("--subzone needs --zone")
    if any("/" in part for part in (args.region, args.zone, args.subzone)):
        raise CliError("--region, --zone and --subzone must not contain '/'")
    spec = SidecarBootstrap(
        pilots=tuple(args.pilot_addr),
        service=args.service,
        namespace=args.namespace,
        node_id=args.id,
        admin_port=args.admin_port,
        outbound_port=args.outbound_port,
        inbound_port=args.inbound_port,
        app_port=args.app_port,
        service_account=args.service_account,
        labels=labels,
        instance_ip=args.address,
        kind="gateway" if args.gateway else "sidecar",
        citadel_addr=args.citadel_addr,
        token_file=os.path.abspath(args.token_file) if args.token_file else None,
        root_cert_file=os.path.abspath(args.root_cert) if args.root_cert else None,
        pilot_identity=args.pilot_identity if args.pilot_tls else None,
        stats_port=args.stats_port,
        stats_address=args.stats_address,
        delta=args.delta,
        locality=(args.region, args.zone, args.subzone),
    )
    if args.pilot_tls and not args.root_cert:
        raise CliError("--pilot-tls needs --root-cert to verify Pilot with")
    if bool(args.citadel_addr) != bool(args.token_file) or (args.token_file and not args.root_cert):
        raise CliError("--citadel-addr, --token-file and --root-cert go together (mesh identity)")
    text = render_yaml(spec.build())
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def citadel_call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = None,
) -> tuple[int, bytes]:
    """(status, body) from Citadel's HTTP API at --citadel-http; an error status is a
    CliError carrying Citadel's own message."""
    import urllib.error
    import urllib.request

    host, port = args.citadel_http
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        f"http://{host}:{port}{path}", data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:300]
        try:
            detail = str(json.loads(detail).get("error", detail))
        except (ValueError, AttributeError):
            pass
        raise CliError(f"citadel answered {err.code}: {detail}") from err
    except OSError as err:
        raise CliError(f"citadel at {host}:{port}: {getattr(err, 'reason', err)}") from err


def _citadel_http(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = None,
) -> bytes:
    return citadel_call(args, method, path, body, token)[1]


def read_admin_token(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as err:
        raise CliError(f"cannot read the admin credential: {err}") from err


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a workload token with the admin credential (never printed when -o is given)."""
    admin = read_admin_token(args.admin_token_file)
    request: dict[str, object] = {
        "namespace": args.namespace,
        "serviceAccount": args.service_account,
        "ttlSeconds": args.ttl,
    }
    if args.gateway:  # only when asked: a Citadel without the role still mints the others
        request["gateway"] = True
    body = json.dumps(request).encode()
    token = json.loads(_citadel_http(args, "POST", "/v1/tokens", body, admin))["token"]
    if args.output:
        _write_private(args.output, token.encode())
        role = " (gateway)" if args.gateway else ""
        print(
            f"token for {args.namespace}/{args.service_account}{role} written to "
            f"{args.output} (0600)"
        )
    else:
        print(token)
    return 0


def cmd_root(args: argparse.Namespace) -> int:
    """Fetch the mesh's trust bundle (public)."""
    pem = _citadel_http(args, "GET", "/v1/roots")
    if args.output:
        with open(args.output, "wb") as f:
            f.write(pem)
    else:
        sys.stdout.write(pem.decode())
    return 0


def cmd_cert(args: argparse.Namespace) -> int:
    """Get a workload certificate through Citadel's CSR API; the key never leaves here."""
    import grpc
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from protos import citadel_ca_pb2, citadel_ca_pb2_grpc

    try:
        with open(args.token_file) as f:
            token = f.read().strip()
    except OSError as err:
        raise CliError(f"cannot read the token file: {err}") from err
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    target = f"{args.citadel_addr[0]}:{args.citadel_addr[1]}"
    if args.tls_root:
        with open(args.tls_root, "rb") as f:
            channel = grpc.secure_channel(
                target,
                grpc.ssl_channel_credentials(f.read()),
                options=[("grpc.ssl_target_name_override", "citadel")],
            )
    else:
        channel = grpc.insecure_channel(target)
    try:
        stub = citadel_ca_pb2_grpc.CertificateServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.CreateCertificate(
            citadel_ca_pb2.CreateCertificateRequest(
                csr=csr.public_bytes(serialization.Encoding.PEM).decode(), validity_seconds=args.ttl
            ),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )
    except grpc.RpcError as err:
        raise CliError(f"citadel at {target}: {err.code().name}: {err.details()}") from err
    finally:
        channel.close()
    os.makedirs(args.out_dir, exist_ok=True)
    _write_private(
        os.path.join(args.out_dir, "key.pem"),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    with open(os.path.join(args.out_dir, "cert-chain.pem"), "w") as f:
        f.write("".join(reply.cert_chain))
    with open(os.path.join(args.out_dir, "root-cert.pem"), "w") as f:
        f.write(reply.root_cert)
    print(f"{reply.identity}: cert-chain.pem, key.pem (0600), root-cert.pem in {args.out_dir}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from meshctl.up import run_up

    return run_up(state_dir=args.state_dir, demo=not args.no_demo, ha=args.ha)


def cmd_down(args: argparse.Namespace) -> int:
    from meshctl.up import run_down

    return run_down(state_dir=args.state_dir)


def _config(name: str) -> Callable[[argparse.Namespace], int]:
    """A config command, imported only when used (startup stays fast)."""

    def run(args: argparse.Namespace) -> int:
        from meshctl import config_cmds

        try:
            return int(getattr(config_cmds, name)(args))
        except config_cmds.ConfigError as err:
            raise CliError(str(err)) from err

    return run


def _plan(args: argparse.Namespace) -> int:
    """meshctl diff: its own exit statuses (2 for any trouble), as diff(1)."""
    from meshctl import plan_cmds

    return plan_cmds.cmd_diff(args)


def _explain(args: argparse.Namespace) -> int:
    """meshctl explain: its own exit statuses (2 when it cannot tell)."""
    from meshctl import explain

    return explain.cmd_explain(args)


def _status(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from meshctl import status_cmds

        try:
            return int(getattr(status_cmds, name)(args))
        except status_cmds.StatusError as err:
            raise CliError(str(err)) from err

    return run


def _secret(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from meshctl import secret_cmds

        return int(getattr(secret_cmds, name)(args))

    return run


def _history(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from meshctl import config_cmds, history_cmds

        try:
            return int(getattr(history_cmds, name)(args))
        except config_cmds.ConfigError as err:
            raise CliError(str(err)) from err

    return run


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line and exit 2, with a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="meshctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def workload(p: argparse.ArgumentParser) -> None:
        p.add_argument("--service", required=True, help="service name (a DNS label)")
        p.add_argument("--namespace", "-n", default="default")
        p.add_argument("--id", required=True, help="unique instance / node id")
        p.add_argument("--service-account", default="default")
        p.add_argument("--label", action="append", type=_label, default=[], metavar="K=V")

    reg = sub.add_parser("register", help="register a workload instance in the Consul catalog")
    reg.add_argument("--consul-addr", type=_addr, default=("127.0.0.1", 8500), metavar="HOST:PORT")
    workload(reg)
    reg.add_argument("--address", required=True, help="where the sidecar's inbound port listens")
    reg.add_argument("--port", type=_port, required=True, help="the sidecar's inbound port")
    reg.add_argument("--service-port", type=_port, default=80, help="logical port clients use")
    reg.add_argument(
        "--protocol",
        choices=("http", "tcp"),
        default="http",
        help="what the service speaks: tcp services are relayed as bytes, not routed as HTTP",
    )
    reg.add_argument("--check-http", default=None, metavar="URL", help="HTTP health check URL")
    reg.add_argument("--check-interval", default="1s")
    reg.add_argument(
        "--stats-port",
        type=_port,
        default=None,
        help="the sidecar's Prometheus stats port (bootstrap --stats-port), at --address: "
        "Galley's dashboard reads the instance's traffic there",
    )
    reg.add_argument(
        "--mtls",
        action="store_true",
        help="the sidecar has a mesh identity: clients use mutual TLS to it",
    )
    reg.add_argument(
        "--workload-group",
        default=None,
        metavar="[NS/]NAME",
        help="take the namespace, service account and labels from this WorkloadGroup's "
        "template (applied through Galley); --label values win over the group's",
    )
    _locality_args(reg, "default: the Consul datacenter")
    reg.set_defaults(func=cmd_register)

    dereg = sub.add_parser("deregister", help="remove a workload instance from the catalog")
    dereg.add_argument(
        "--consul-addr", type=_addr, default=("127.0.0.1", 8500), metavar="HOST:PORT"
    )
    dereg.add_argument("--id", required=True)
    dereg.set_defaults(func=cmd_deregister)

    boot = sub.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap (YAML) for a sidecar",
        description=(
            "Print an Envoy bootstrap for a sidecar or gateway. Run Envoy on it with "
            "--drain-time-s 5 --drain-strategy immediate (the file's first line says so): "
            "Envoy's default drain keeps connections on a replaced listener for 600 s."
        ),
    )
    boot.add_argument(
        "--pilot-addr",
        type=_addrs,
        required=True,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="Pilot's xDS address; with several replicas, all of them (Envoy fails over)",
    )
    workload(boot)
    boot.add_argument("--admin-port", type=_port, required=True)
    boot.add_argument("--outbound-port", type=_port, default=None)
    boot.add_argument(
        "--gateway",
        default=None,
        metavar="NAME",
        help="a gateway proxy labelled istio=NAME (Istio Gateways select it by that label) "
        "that also serves the Gateway API Gateway NAME of its namespace",
    )
    boot.add_argument("--inbound-port", type=_port, default=None)
    boot.add_argument("--app-port", type=_port, default=None)
    boot.add_argument("--address", default="127.0.0.1", help="the workload's IP")
    boot.add_argument(
        "--citadel-addr",
        default=None,
        metavar="HOST:PORT",
        help="Citadel's SDS over TLS: gives the sidecar its mesh identity",
    )
    boot.add_argument("--token-file", default=None, help="workload token (from meshctl token)")
    boot.add_argument("--root-cert", default=None, help="Citadel's root bundle (meshctl root)")
    protocol = boot.add_mutually_exclusive_group()
    protocol.add_argument(
        "--delta",
        dest="delta",
        action="store_true",
        default=True,
        help="incremental (Delta) xDS, the default",
    )
    protocol.add_argument(
        "--sotw", dest="delta", action="store_false", help="State-of-the-World xDS instead"
    )
    boot.add_argument(
        "--stats-port",
        type=_port,
        default=None,
        help="serve Envoy's stats in Prometheus format here (/stats/prometheus)",
    )
    boot.add_argument(
        "--stats-address",
        default=None,
        metavar="IP",
        help="the stats port's address (default: --address; 0.0.0.0 in a container)",
    )
    boot.add_argument(
        "--pilot-tls",
        action="store_true",
        help="--pilot-addr is Pilot's TLS port: verify it against --root-cert",
    )
    boot.add_argument(
        "--pilot-identity",
        default="spiffe://cluster.local/ns/mesh-system/sa/pilot",
        help="the SPIFFE identity Pilot's certificate must carry",
    )
    boot.add_argument("-o", "--output", default=None, help="write to a file instead of stdout")
    _locality_args(boot, "as instances have it: their Consul datacenter unless set")
    boot.set_defaults(func=cmd_bootstrap)

    def galley(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--galley-addr", type=_addr, default=("127.0.0.1", 15080), metavar="HOST:PORT"
        )
        p.add_argument("--token", default=None, help="Galley write token (or env MESH_TOKEN)")
        p.add_argument("--token-file", default=None)

    val = sub.add_parser("validate", help="validate Istio config offline (exit 1 on errors)")
    val.add_argument(
        "-f", "--filename", action="append", required=True, help="file, or - for stdin"
    )
    val.add_argument("-n", "--namespace", default="default", help="for documents without one")
    val.set_defaults(func=_config("cmd_validate"))

    app = sub.add_parser("apply", help="validate and store config through Galley (all or nothing)")
    app.add_argument(
        "-f", "--filename", action="append", required=True, help="file, or - for stdin"
    )
    app.add_argument("-n", "--namespace", default="default", help="for documents without one")
    app.add_argument(
        "--wait",
        action="store_true",
        help="wait until every affected proxy ACKed the change (exit 1 on a NACK or timeout)",
    )
    app.add_argument(
        "--timeout", type=_duration, default=30.0, help="with --wait: how long (30s, 2m, 500ms)"
    )
    galley(app)
    app.set_defaults(func=_config("cmd_apply"))

    get = sub.add_parser("get", help="show stored config")
    get.add_argument("kind", help="VirtualService, vs, destinationrules, ...")
    get.add_argument("name", nargs="?", default=None)
    get.add_argument("-n", "--namespace", default="default")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-o", "--output", choices=["yaml", "json"], default=None)
    galley(get)
    get.set_defaults(func=_config("cmd_get"))

    dele = sub.add_parser("delete", help="delete stored config")
    dele.add_argument("kind")
    dele.add_argument("name")
    dele.add_argument("-n", "--namespace", default="default")
    galley(dele)
    dele.set_defaults(func=_config("cmd_delete"))

    dif = sub.add_parser(
        "diff",
        help="what applying config would change in each proxy's Envoy config (stores nothing)",
        description="Galley validates the files as apply would; every Pilot plans the change "
        "for its connected proxies (grouped: proxies with the same change are one group) and "
        "the real Envoy checks the planned config. Nothing is stored; it needs the write "
        "token, as apply does. Exit status: 0 no proxy's config would change, 1 some would, "
        "2 trouble (invalid input, Galley unreachable, unknown proxy, or Envoy refusing the "
        "planned config).",
    )
    dif.add_argument(
        "-f", "--filename", action="append", required=True, help="file, or - for stdin"
    )
    dif.add_argument("-n", "--namespace", default="default", help="for documents without one")
    dif.add_argument("--proxy", default=None, help="only this proxy (its node id)")
    dif.add_argument("--stat", action="store_true", help="names only, no JSON diff")
    dif.add_argument("-o", "--output", choices=["json"], default=None)
    galley(dif)
    dif.set_defaults(func=_plan)

    hist = sub.add_parser("history", help="the kept revisions of a resource: when, by whom")
    hist.add_argument("kind", help="VirtualService, vs, httproutes.gateway.networking.k8s.io, ...")
    hist.add_argument("name")
    hist.add_argument("-n", "--namespace", default="default")
    hist.add_argument("-o", "--output", choices=["json"], default=None)
    hist.add_argument("--show", type=int, metavar="REVISION", help="print that revision's YAML")
    galley(hist)
    hist.set_defaults(func=_history("cmd_history"))

    back = sub.add_parser(
        "rollback", help="store an earlier revision again (validated as apply validates)"
    )
    back.add_argument("kind")
    back.add_argument("name")
    back.add_argument("-n", "--namespace", default="default")
    back.add_argument(
        "--to", type=int, metavar="REVISION", help="default: the one before the current"
    )
    galley(back)
    back.set_defaults(func=_history("cmd_rollback"))

    def citadel(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--citadel-http",
            type=_addr,
            default=("127.0.0.1", 15016),
            metavar="HOST:PORT",
            help="Citadel's HTTP address",
        )

    tok = sub.add_parser("token", help="mint a workload token (needs Citadel's admin credential)")
    citadel(tok)
    tok.add_argument("--admin-token-file", required=True)
    tok.add_argument("--namespace", "-n", default="default")
    tok.add_argument("--service-account", required=True)
    tok.add_argument("--ttl", type=int, default=86_400, help="seconds")
    tok.add_argument("-o", "--output", default=None, help="write it to this file (0600)")
    tok.add_argument(
        "--gateway",
        action="store_true",
        help="the gateway role: may fetch its namespace's gateway credentials over SDS",
    )
    tok.set_defaults(func=cmd_token)

    def admin(p: argparse.ArgumentParser) -> None:
        citadel(p)
        p.add_argument("--admin-token-file", required=True)
        p.add_argument("--namespace", "-n", default="default")

    sec = sub.add_parser(
        "secret", help="gateway TLS credentials held by Citadel (a Gateway's credentialName)"
    )
    sec_sub = sec.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sec_sub.add_parser("create", help="create or replace a credential")
    create_sub = create.add_subparsers(dest="type", required=True, metavar="TYPE")
    tls = create_sub.add_parser("tls", help="a server certificate and key (and client CA)")
    tls.add_argument("name", help="the Gateway's credentialName")
    tls.add_argument("--cert", required=True, help="certificate chain, PEM, leaf first")
    tls.add_argument("--key", required=True, help="private key, PEM (unencrypted)")
    tls.add_argument("--ca-cert", default=None, help="CA bundle that verifies clients (MUTUAL)")
    admin(tls)
    tls.set_defaults(func=_secret("cmd_create"))
    generic = create_sub.add_parser("generic", help="a CA bundle only (NAME-cacert, for MUTUAL)")
    generic.add_argument("name")
    generic.add_argument("--ca-cert", required=True, help="CA bundle, PEM")
    admin(generic)
    generic.set_defaults(func=_secret("cmd_create"))
    lst = sec_sub.add_parser("list", help="names, types and expiry (never key material)")
    admin(lst)
    lst.add_argument("-o", "--output", choices=["json"], default=None)
    lst.set_defaults(func=_secret("cmd_list"))
    rm = sec_sub.add_parser("delete", help="delete a credential (Citadel stops serving it)")
    rm.add_argument("name")
    admin(rm)
    rm.set_defaults(func=_secret("cmd_delete"))

    root = sub.add_parser("root", help="fetch the mesh's root certificate bundle")
    citadel(root)
    root.add_argument("-o", "--output", default=None)
    root.set_defaults(func=cmd_root)

    cert = sub.add_parser("cert", help="get cert/key/root files for a workload without Envoy")
    cert.add_argument(
        "--citadel-addr", type=_addr, default=("127.0.0.1", 15012), metavar="HOST:PORT"
    )
    cert.add_argument("--token-file", required=True)
    cert.add_argument("--tls-root", default=None, help="use Citadel's TLS port, trusting this root")
    cert.add_argument("--ttl", type=int, default=0, help="seconds (0: Citadel's maximum)")
    cert.add_argument("--out-dir", required=True)
    cert.set_defaults(func=cmd_cert)

    def pilot_http(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--pilot-http",
            type=_addr,
            default=("127.0.0.1", 15014),
            metavar="HOST:PORT",
            help="Pilot's HTTP (debug) address",
        )

    status = sub.add_parser("proxy-status", help="every connected proxy and its xDS sync state")
    pilot_http(status)
    status.add_argument("-o", "--output", choices=["json"], default=None)
    status.set_defaults(func=_status("cmd_proxy_status"))

    pc = sub.add_parser("proxy-config", help="what Pilot sent one proxy")
    pc.add_argument(
        "kind", choices=["clusters", "listeners", "routes", "endpoints", "ecds", "secrets"]
    )
    pc.add_argument("proxy", help="the proxy's node id")
    pilot_http(pc)
    pc.add_argument("-o", "--output", choices=["json"], default=None)
    pc.set_defaults(func=_status("cmd_proxy_config"))

    ex = sub.add_parser(
        "explain",
        help="what the mesh does with one request: route, cluster, mTLS, authorization",
        description="Follow one request through the config the proxies hold (as Pilot sent "
        "it): the source sidecar's route, cluster(s), retries/timeout/fault, the TLS it uses, "
        "then the destination sidecar's mTLS mode, request authentication and authorization "
        "policies. Exit status: 0 routed and allowed, 1 not (denied, refused, no route, an "
        "error status, or an external authorizer decides), 2 cannot tell (bad input, unknown "
        "workload, Pilot unreachable).",
    )
    ex.add_argument("request", metavar="REQUEST", help="'METHOD http://HOST[:PORT]/PATH?QUERY'")
    ex.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="WORKLOAD",
        help="the sending proxy: its node id, or SERVICE[.NAMESPACE]",
    )
    ex.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'")
    ex.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a claim of the request's (valid) JWT; repeat a key for a list, a.b for nested",
    )
    ex.add_argument(
        "--pilot-http",
        type=_addrs,
        default=[("127.0.0.1", 15014)],
        metavar="HOST:PORT[,HOST:PORT...]",
        help="Pilot's HTTP (debug) address; with several replicas, all of them",
    )
    ex.add_argument("--listener", default=None, help="the source listener (default: outbound)")
    ex.add_argument("--source-principal", default=None, help="the source's SPIFFE id, if unknown")
    ex.add_argument(
        "--source-ip", default=None, help="the source's address as the destination sees it"
    )
    ex.add_argument("-o", "--output", choices=["json"], default=None)
    ex.set_defaults(func=_explain)

    up = sub.add_parser("up", help="run the whole mesh locally with a demo, until Ctrl-C")
    up.add_argument("--state-dir", default=".mesh", help="logs and state go here")
    up.add_argument("--no-demo", action="store_true", help="only the control plane")
    up.add_argument(
        "--ha",
        action="store_true",
        help="three Consul servers, two Pilots and two Galleys (any one of each may fail)",
    )
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop what `meshctl up` started")
    down.add_argument("--state-dir", default=".mesh")
    down.set_defaults(func=cmd_down)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader stopped reading (`| head`): nothing to report. Point stdout at
        # /dev/null so the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE
    except CliError as err:
        print(f"meshctl {args.command}: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"meshctl {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
