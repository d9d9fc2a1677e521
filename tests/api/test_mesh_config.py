"""The mesh config's extension providers: Istio's fields, validated with field paths."""

from __future__ import annotations

import pytest

from api.mesh_config import MeshConfigError, load_mesh_config
from api.service_cli import SettingsError, load_settings
from pilot.settings import PilotSettings


def _http(extra: str) -> str:
    """One HTTP provider with one more field."""
    return (
        f"extensionProviders: [{{name: a, envoyExtAuthzHttp: {{service: a.b, port: 1, {extra}}}}}]"
    )


GOOD = """
extensionProviders:
- name: http-authz
  envoyExtAuthzHttp: {service: authz.default.svc.cluster.local, port: 8000, timeout: 1s}
- name: grpc-authz
  envoyExtAuthzGrpc: {service: ns/authz.example.com, port: 9000, failOpen: true}
"""


def test_a_valid_mesh_config_loads() -> None:
    config = load_mesh_config(GOOD, "mesh.yaml")
    http, grpc = config.extension_providers or []
    assert http.envoy_ext_authz_http is not None and http.envoy_ext_authz_http.port == 8000
    assert grpc.envoy_ext_authz_grpc is not None and grpc.envoy_ext_authz_grpc.fail_open
    assert config.provider("grpc-authz") is grpc and config.provider("nope") is None
    assert load_mesh_config("", "empty.yaml").extension_providers is None


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        (
            "extensionProviders: [{envoyExtAuthzHttp: {service: a.b, port: 1}}]",
            "extensionProviders[0].name",
            "missing",
        ),
        ("extensionProviders: [{name: a}]", "extensionProviders[0]", "exactly one"),
        (
            "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a.b, port: 1},"
            " envoyExtAuthzGrpc: {service: a.b, port: 1}}]",
            "extensionProviders[0]",
            "exactly one",
        ),
        (
            "extensionProviders: [{name: a, envoyExtAuthzHttp: {port: 80}}]",
            "envoyExtAuthzHttp.service",
            "missing",
        ),
        (
            "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: a.b, port: 0}}]",
            "envoyExtAuthzGrpc.port",
            "port",
        ),
        (
            _http("timeout: soon"),
            "timeout",
            "",
        ),
        (
            _http("statusOnError: teapot"),
            "statusOnError",
            "status",
        ),
        (
            _http("pathPrefix: x"),
            "pathPrefix",
            "/",
        ),
        (
            "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a.b, port: '1'}}]",
            "port",
            "integer",
        ),
        (
            "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a.b, port: 1, bogus: 1}}]",
            "bogus",
            "unknown",
        ),
        (
            "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a.b, port: 1}},"
            " {name: a, envoyExtAuthzHttp: {service: a.b, port: 1}}]",
            "extensionProviders[1].name",
            "twice",
        ),
        ("- 1", "", "mapping"),
    ],
)
def test_invalid_mesh_configs_name_the_field(text: str, path: str, message: str) -> None:
    with pytest.raises(MeshConfigError) as err:
        load_mesh_config(text, "mesh.yaml")
    assert any(path in i.path and message in i.message for i in err.value.issues), err.value


def test_pilot_refuses_to_start_with_a_bad_mesh_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "mesh.yaml"
    bad.write_text("extensionProviders: [{name: a}]")
    with pytest.raises(SettingsError):
        load_settings(PilotSettings, [f"--mesh-config={bad}"], "pilot", None)
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    settings = load_settings(PilotSettings, [f"--mesh-config={good}"], "pilot", None)
    assert [p.name for p in settings.extension_providers()] == ["http-authz", "grpc-authz"]
