"""meshctl secret create tls|generic / list / delete: gateway credentials held by Citadel.

What ``kubectl create secret tls|generic`` is for an Istio gateway's
``credentialName``: the certificate and key go to Citadel's HTTP API with the
admin credential, Citadel seals them in Consul, and the gateway's Envoy
fetches them over SDS as ``kubernetes://NAME`` (and ``kubernetes://NAME-cacert``).
Nothing read from the files, and nothing secret, is ever printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from meshctl.cli import CliError, citadel_call, read_admin_token

__all__ = ["cmd_create", "cmd_delete", "cmd_list"]


def _path(namespace: str, name: str | None = None) -> str:
    path = "/v1/secrets/" + urllib.parse.quote(namespace, safe="")
    return path + "/" + urllib.parse.quote(name, safe="") if name is not None else path


def _read_pem(flag: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:  # its message would quote a byte of the file
        raise CliError(f"{flag} {path}: not PEM text (not UTF-8; DER? convert it)") from None
    except OSError as err:
        raise CliError(f"cannot read {flag} {path}: {err.strerror or err}") from err


def cmd_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"type": args.type}
    if args.type == "tls":
        body["cert"] = _read_pem("--cert", args.cert)
        body["key"] = _read_pem("--key", args.key)
    if args.ca_cert:
        body["caCert"] = _read_pem("--ca-cert", args.ca_cert)
    admin = read_admin_token(args.admin_token_file)
    status, raw = citadel_call(
        args, "PUT", _path(args.namespace, args.name), json.dumps(body).encode(), admin
    )
    answer = json.loads(raw)
    done = "created" if status == 201 else "replaced"
    print(
        f"secret {answer['type']} {answer['namespace']}/{answer['name']} {done} "
        f"(valid until {answer['notAfter']})"
    )
    for warning in answer.get("warnings", []):
        print(f"meshctl secret: warning: {warning}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    admin = read_admin_token(args.admin_token_file)
    _, raw = citadel_call(args, "GET", _path(args.namespace), None, admin)
    answer = json.loads(raw)
    if args.output == "json":
        print(json.dumps(answer, indent=2))
        return 0
    secrets = answer.get("secrets", [])
    if not secrets:
        print(f"no gateway credentials in namespace {answer['namespace']}")
        return 0
    width = max(4, *(len(s["name"]) for s in secrets))
    print(f"{'NAME':<{width}}  {'TYPE':<8}  NOT AFTER")
    for s in secrets:
        after = s.get("notAfter") or f"- ({s.get('error', 'unreadable')})"
        print(f"{s['name']:<{width}}  {s.get('type') or '?':<8}  {after}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    admin = read_admin_token(args.admin_token_file)
    citadel_call(args, "DELETE", _path(args.namespace, args.name), None, admin)
    print(f"secret {args.namespace}/{args.name} deleted")
    return 0
