"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file must validate against the Compose specification's schema,
name only images it builds from this repo or pinned public ones, and run only
commands this repo provides with flags they accept; the Dockerfile must copy
what exists and install the project that the local launcher runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from api.service_cli import SettingsError, load_settings
from citadel.settings import CitadelSettings
from galley.settings import GalleySettings
from meshctl.bootstrap import DRAIN_ARGS
from meshctl.cli import build_parser
from meshctl.demo_app import build_parser as demo_parser
from meshctl.registrator import RegistratorSettings
from pilot.settings import PilotSettings

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MESH_CACHE_DIR") or Path.home() / ".cache" / "meshpy")
SCHEMA = CACHE / "compose_spec.json"
SETTINGS = {
    "pilot": PilotSettings,
    "galley": GalleySettings,
    "citadel": CitadelSettings,
    "meshctl.registrator": RegistratorSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.skipif(not SCHEMA.exists(), reason="run scripts/setup.sh to fetch the Compose schema")
def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)


def test_images_are_built_here_or_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if "build" in svc:
            build = svc["build"] if isinstance(svc["build"], dict) else {"context": svc["build"]}
            assert (ROOT / build["context"] / "Dockerfile").exists(), name
            continue
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.match(r"v?\d+(\.\d+)*$", tag), (name, image)


def _check_command(name: str, command: list[str], env: dict[str, Any]) -> None:
    if command[:2] == ["python", "-m"]:
        module, args = command[2], command[3:]
        if module in SETTINGS:
            try:
                load_settings(SETTINGS[module], args, f"python -m {module}", None)
            except SettingsError as err:  # pragma: no cover - the message is the failure
                pytest.fail(f"{name}: {module} refuses its flags: {err}")
        elif module == "meshctl.demo_app":
            demo_parser().parse_args(args)
        else:
            pytest.fail(f"{name}: unknown module {module}")
        return
    script = ROOT / command[0]
    assert script.exists() and os.access(script, os.X_OK), (name, command[0])
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    # Every meshctl command the script runs parses, with placeholders for its variables.
    text = re.sub(r"\\\n\s*", " ", script.read_text())
    text = re.sub(r"\s\d?>\s*[^\s;|&]+", "", text)  # drop redirections
    for line in re.findall(r"meshctl ([a-z-]+ [^\n|&;]*)", text):
        args = shlex.split(re.sub(r"\$\{[^}]*\}|\$\w+", "VAR", line))
        build_parser().parse_args(_fill(args))


def _fill(args: list[str]) -> list[str]:
    """Shell variables become values of the right shape for the flag they follow."""
    out: list[str] = []
    for i, arg in enumerate(args):
        flag = args[i - 1] if i else ""
        if "VAR" not in arg:
            out.append(arg)
        elif flag.endswith(("-addr", "-http")):
            out.append("h:1")
        elif flag.endswith("-port"):
            out.append("1")
        else:
            out.append(arg.replace("VAR", "x"))
    return out


def test_every_command_is_ours_and_accepts_its_flags(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if "build" not in svc and "<<" not in svc and svc.get("image", "").startswith("hashicorp/"):
            continue
        _check_command(name, svc["command"], svc.get("environment") or {})


def test_every_app_has_a_sidecar_sharing_its_network(compose: dict[str, Any]) -> None:
    services = compose["services"]
    apps = [n for n, s in services.items() if "meshctl.demo_app" in s.get("command", [])]
    assert len(apps) == 6
    for app in apps:
        sidecar = services[f"{app}-sidecar"]
        assert sidecar["network_mode"] == f"service:{app}"
        assert sidecar["command"] == ["docker/sidecar.sh"]
        labels = services[app]["labels"]
        assert labels["SERVICE_15006_NAME"] == app.rsplit("-", 1)[0]  # the sidecar's port


def test_compose_sidecars_run_envoy_with_the_mesh_drain_flags() -> None:
    script = (ROOT / "docker" / "sidecar.sh").read_text()
    last = script.replace("\\\n", " ").strip().splitlines()[-1]
    words = shlex.split(last)
    assert words[:2] == ["exec", "envoy"]
    assert " ".join(DRAIN_ARGS) in " ".join(words)


def test_registrator_labels_give_the_catalog_shape_pilot_reads(compose: dict[str, Any]) -> None:
    """Each app's labels, through the registrator, give the instance Pilot expects: the
    sidecar's port registered, the app's own port probed (it stays plain HTTP when the
    sidecar demands mutual TLS), and the workload's fields and labels."""
    from api.catalog import instance_from_health_entry
    from meshctl.registrator import plan_container
    from tests.meshctl.test_registrator import container

    apps = [n for n, s in compose["services"].items() if "meshctl.demo_app" in s["command"]]
    for app in apps:
        svc = compose["services"][app]
        service, version = app.rsplit("-", 1)
        plan = plan_container(container(f"meshpy-{app}-1", svc["labels"]), "host")
        assert plan.problems == [], (app, plan.problems)
        ((sid, body),) = plan.registrations.items()
        assert body["Check"]["HTTP"] == "http://172.18.0.7:9080/healthz", app
        entry = {
            "Node": {"Address": "172.18.0.7"},
            "Service": {
                "ID": sid,
                "Service": body["Name"],
                "Address": body["Address"],
                "Port": body["Port"],
                "Tags": body["Tags"],
                "Meta": body["Meta"],
            },
        }
        inst = instance_from_health_entry(entry)
        assert inst is not None, app
        assert (inst.service, inst.port, inst.service_port, inst.tls_mode) == (
            service,
            15006,
            9080,
            "istio",
        ), app
        assert (inst.namespace, inst.service_account) == ("default", f"shop-{service}"), app
        assert inst.labels == {"version": version, "app": service}, app


def test_ports_match_the_flags(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        command = " ".join(svc.get("command", []))
        for published in svc.get("ports", []):
            assert published.startswith("127.0.0.1:"), (name, published)  # loopback only
            container = published.rsplit(":", 1)[1]
            assert container in command or name in ("consul", "ingressgateway"), (name, published)


def test_dockerfile_copies_what_exists_and_installs_the_launchers_entry_points() -> None:
    text = (ROOT / "Dockerfile").read_text()
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), path
            assert path not in ignored, f".dockerignore leaves {path} out of the build"
    assert "pip install --no-cache-dir ." in text and "envoy --version" in text
    launcher = (ROOT / "meshctl" / "up.py").read_text()
    for module in ("pilot", "galley", "citadel", "meshctl.demo_app"):
        assert re.search(rf'"-m",\s*"{re.escape(module)}"', launcher), module  # same entry points


def test_every_source_directory_is_a_package_the_image_installs() -> None:
    """The image runs `pip install .`, which packages only directories with __init__.py."""
    for root in ("api", "pilot", "citadel", "galley", "meshctl"):
        for source in (ROOT / root).rglob("*.py"):
            assert (source.parent / "__init__.py").exists(), f"{source.parent} is not a package"


def test_consul_is_the_open_source_release_and_keeps_its_data(compose: dict[str, Any]) -> None:
    consul = compose["services"]["consul"]
    image, _, version = consul["image"].partition(":")
    assert image == "hashicorp/consul"
    major, minor, _patch = (int(p) for p in version.split("."))
    assert (major, minor) <= (1, 16), "1.17 and later are under the Business Source License"
    assert "-dev" not in consul["command"]
    assert any(v.endswith(":/consul/data") for v in consul["volumes"])


def test_citadel_keeps_gateway_credentials_in_consul_and_the_gateway_has_the_role(
    compose: dict[str, Any],
) -> None:
    """`meshctl secret` works against the compose mesh: Citadel knows Consul, and the
    ingress gateway's token (minted by the tokens one-shot) carries the gateway role."""
    services = compose["services"]
    citadel = services["citadel"]["command"]
    settings = load_settings(CitadelSettings, citadel[3:], "python -m citadel", None)
    assert settings.consul_addr == "consul:8500"
    assert "consul" in services["citadel"]["depends_on"]
    gateway = services["ingressgateway"]["environment"]
    identity = f"{gateway['NAMESPACE']}/{gateway['SERVICE_ACCOUNT']}"
    tokens = services["tokens"]["command"]
    assert f"gateway:{identity}" in tokens
    assert not any(arg.startswith("gateway:") for arg in tokens if arg != f"gateway:{identity}")
    script = (ROOT / "docker" / "mint-tokens.sh").read_text().replace("\\\n", " ")
    assert re.search(r"meshctl token [^\n]*--gateway", script)
