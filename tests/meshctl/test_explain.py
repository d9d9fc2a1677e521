"""`meshctl explain` over config Pilot's own generators make for each proxy.

Each test builds a small mesh (catalog, Istio YAML, connected proxies), renders
every proxy's config dump as Pilot's /debug/config_dump would, and checks what
explain says the request meets: route, clusters, policies, mTLS and verdict.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshctl import cli, explain
from meshctl.explain import ExplainError, Pilots, Report, render
from meshctl.explain_route import ExplainInputError, parse_claims, parse_request
from tests.meshctl.explain_mesh import FakeMesh

SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def shop(config: str = "", *, source_mtls: bool = True, providers: str = "") -> FakeMesh:
    """productpage (the caller) and reviews v1/v2 (the callee), all with mesh identities."""
    mesh = FakeMesh(config=SUBSETS + "---\n" + config if config else SUBSETS, providers=providers)
    mesh.add("productpage", "productpage-1", service_account="productpage", mtls=source_mtls)
    mesh.add("reviews", "reviews-v1", service_account="reviews")
    mesh.add("reviews", "reviews-v2", version="v2", service_account="reviews")
    return mesh


def run(
    mesh: FakeMesh | Pilots,
    line: str,
    *headers: str,
    source: str = "productpage",
    claims: dict[str, Any] | None = None,
) -> Report:
    pilots = mesh.pilots() if isinstance(mesh, FakeMesh) else mesh
    return explain.explain(pilots, source, parse_request(line, headers), claims or {})


def vs(http: str, host: str = "reviews") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {host}, namespace: default}}
spec:
  hosts: [{host}]
  http:
{http}
"""


def policy(name: str, spec: str, namespace: str = "default") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{spec}
"""


def subsets_of(report: Report) -> list[tuple[str, int]]:
    return [(t.parts[2], t.weight) for t in report.route.targets]


# --- routing ---


def test_default_route_mtls_and_no_policy() -> None:
    report = run(shop(), "GET http://reviews/api?x=1")
    assert report.outcome == "allowed" and report.exit_code == 0
    route = report.route
    assert route.listener == "outbound_127.0.0.1_15001"
    assert route.route_config == "outbound|http|default"
    assert route.virtual_host == "reviews.default.svc.cluster.local:9080"
    assert route.domain == "reviews" and route.route_name == "default"
    assert route.targets[0].cluster == "outbound|9080||reviews.default.svc.cluster.local"
    assert route.retries["attempts"] == 2 and route.timeout == "none"
    dest = report.destinations[0]
    assert dest.upstream.mode == "auto mTLS"
    assert {c.proxy for c in dest.checks} == {"reviews-v1", "reviews-v2"}
    assert all(c.tls == "mesh mTLS" for c in dest.checks)
    assert all(c.sans == ["spiffe://cluster.local/ns/default/sa/reviews"] for c in dest.checks)
    assert report.principal == "spiffe://cluster.local/ns/default/sa/productpage"
    text = render(report)
    assert "mTLS: yes (spiffe://cluster.local/ns/default/sa/reviews)" in text
    assert "verdict     ALLOWED" in text


def test_header_routes_to_v2_default_to_v1() -> None:
    mesh = shop(
        vs(
            """
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
        )
    )
    pilots = mesh.pilots()
    jason = run(pilots, "GET http://reviews/", "end-user: jason")
    assert jason.route.route_name == "jason" and subsets_of(jason) == [("v2", 100)]
    assert [c.proxy for c in jason.destinations[0].checks] == ["reviews-v2"]
    other = run(pilots, "GET http://reviews/", "end-user: bob")
    assert other.route.route_name == "rule-1" and subsets_of(other) == [("v1", 100)]
    assert other.route.skipped == ["jason: header end-user exact 'jason' does not match"]


@pytest.mark.parametrize(
    ("match", "request_line", "headers", "matched"),
    [
        ("{uri: {exact: /api}}", "GET http://reviews/api?x=1", (), True),
        ("{uri: {exact: /api}}", "GET http://reviews/api/", (), False),
        ("{uri: {prefix: /api}}", "GET http://reviews/api/v1", (), True),
        ("{uri: {regex: '/v[0-9]+/.*'}}", "GET http://reviews/v2/x", (), True),
        ("{uri: {prefix: /API}, ignoreUriCase: true}", "GET http://reviews/api/v1", (), True),
        ("{method: {exact: POST}}", "GET http://reviews/", (), False),
        ("{method: {exact: POST}}", "POST http://reviews/", (), True),
        ("{queryParams: {debug: {exact: '1'}}}", "GET http://reviews/?debug=1", (), True),
        ("{queryParams: {debug: {exact: '1'}}}", "GET http://reviews/?debug=0", (), False),
        ("{headers: {x-tier: {prefix: gold}}}", "GET http://reviews/", ("x-tier: golden",), True),
        ("{headers: {x-id: {regex: '[a-f]+'}}}", "GET http://reviews/", ("x-id: abz",), False),
        (
            "{withoutHeaders: {x-canary: {exact: 'yes'}}}",
            "GET http://reviews/",
            ("x-canary: no",),
            True,
        ),
        (
            "{withoutHeaders: {x-canary: {exact: 'yes'}}}",
            "GET http://reviews/",
            ("x-canary: yes",),
            False,
        ),
        # Envoy: an inverted match on a header the request lacks does not match
        ("{withoutHeaders: {x-canary: {exact: 'yes'}}}", "GET http://reviews/", (), False),
        ("{authority: {exact: 'reviews:9080'}}", "GET http://reviews:9080/", (), True),
        ("{authority: {exact: 'reviews:9080'}}", "GET http://reviews/", (), False),
    ],
)
def test_each_http_match(
    match: str, request_line: str, headers: tuple[str, ...], matched: bool
) -> None:
    mesh = shop(
        vs(
            f"""
  - name: special
    match: [{match}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
"""
        )
    )
    report = run(mesh, request_line, *headers)
    assert (report.route.route_name == "special") is matched, report.route.skipped
    assert subsets_of(report) == [("v2" if matched else "v1", 100)]


def test_weighted_subsets_each_checked() -> None:
    mesh = shop(
        vs(
            """
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 75}
    - {destination: {host: reviews, subset: v2}, weight: 25}
"""
        )
    )
    report = run(mesh, "GET http://reviews/")
    assert subsets_of(report) == [("v1", 75), ("v2", 25)]
    assert [d.checks[0].proxy for d in report.destinations] == ["reviews-v1", "reviews-v2"]
    assert report.outcome == "allowed"
    assert "75% to reviews.default subset v1" in report.detail


def test_retries_timeout_mirror_headers_rewrite() -> None:
    mesh = shop(
        vs(
            """
  - route: [{destination: {host: reviews, subset: v1}}]
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,503"}
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 50}
    rewrite: {uri: /v1, authority: reviews.internal}
    headers:
      request: {set: {x-via: explain}, remove: [x-drop]}
      response: {add: {x-served: mesh}}
"""
        )
    )
    report = run(mesh, "GET http://reviews/api", "x-drop: 1")
    route = report.route
    assert route.timeout == "10s"
    assert route.retries == {
        "retry_on": "5xx,retriable-status-codes",
        "attempts": 3,
        "per_try_timeout": "2s",
        "status_codes": [503],
        "other_host": True,
    }
    assert route.mirrors == [
        {"cluster": "outbound|9080|v2|reviews.default.svc.cluster.local", "percent": 50.0}
    ]
    assert route.rewrite == {"path": "/v1api", "host": "reviews.internal"}
    assert route.headers["request_add"] == ["x-via: explain"]
    assert route.headers["request_remove"] == ["x-drop"]
    upstream = route.upstream_request
    assert upstream is not None and upstream.authority == "reviews.internal"
    assert ("x-via", "explain") in upstream.headers
    assert all(name != "x-drop" for name, _ in upstream.headers)
    text = render(report)
    assert "retries     3 on 5xx,retriable-status-codes, 2s per try, status 503" in text
    assert "mirror      outbound|9080|v2|reviews.default.svc.cluster.local (50%)" in text


def test_rewritten_request_is_what_destination_policy_sees() -> None:
    mesh = shop(
        vs(
            """
  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2}
    route: [{destination: {host: reviews, subset: v1}}]
"""
        )
        + "---\n"
        + policy(
            "only-v2",
            "  selector: {matchLabels: {app: reviews}}\n"
            "  rules: [{to: [{operation: {paths: ['/v2*']}}]}]",
        )
    )
    assert run(mesh, "GET http://reviews/api/items").outcome == "allowed"


def test_fault_abort_for_all_requests_is_the_answer() -> None:
    mesh = shop(
        vs(
            """
  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
"""
        )
    )
    report = run(mesh, "GET http://reviews/")
    assert (report.outcome, report.status, report.exit_code) == ("fault", 418, 1)
    assert report.route.fault == {"abort": {"percent": 100.0, "http_status": 418}}
    assert report.destinations == []


def test_partial_fault_and_delay_are_notes() -> None:
    mesh = shop(
        vs(
            """
  - fault:
      abort: {httpStatus: 503, percentage: {value: 10}}
      delay: {fixedDelay: 2s, percentage: {value: 50}}
    route: [{destination: {host: reviews, subset: v1}}]
"""
        )
    )
    report = run(mesh, "GET http://reviews/")
    assert report.outcome == "allowed"
    assert "fault injection aborts 10% of requests with 503" in report.notes
    assert "abort 503 for 10% of requests; delay 2s for 50%" in render(report)


def test_redirect_and_direct_responses() -> None:
    mesh = shop(
        vs(
            """
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: shop.example, redirectCode: 302}
  - match: [{uri: {prefix: /gone}}]
    directResponse: {status: 410, body: {string: "gone"}}
  - match: [{uri: {prefix: /ok}}]
    directResponse: {status: 200}
  - route: [{destination: {host: reviews, subset: v1}}]
"""
        )
    )
    pilots = mesh.pilots()
    redirect = run(pilots, "GET http://reviews/old")
    assert (redirect.outcome, redirect.status, redirect.exit_code) == ("redirect", 302, 0)
    assert "http://shop.example/new" in redirect.detail
    gone = run(pilots, "GET http://reviews/gone")
    assert (gone.outcome, gone.status, gone.exit_code) == ("direct_response", 410, 1)
    assert "'gone'" in gone.detail
    ok = run(pilots, "GET http://reviews/ok")
    assert (ok.outcome, ok.status, ok.exit_code) == ("allowed", 200, 0)


def test_hosts_and_ports() -> None:
    pilots = shop().pilots()
    assert run(pilots, "GET http://reviews.default.svc.cluster.local:9080/").outcome == "allowed"
    assert run(pilots, "GET http://reviews:9080/").route.domain == "reviews:9080"
    for line in ("GET http://reviews:1234/", "GET http://nope/"):
        report = run(pilots, line)
        assert (report.outcome, report.status, report.exit_code) == ("no_virtual_host", 404, 1)
        assert "serves the host" in report.detail
    by_host = run(pilots, "GET http://anything/", "Host: reviews")
    assert by_host.request.authority == "reviews" and by_host.outcome == "allowed"


def test_missing_subset_and_empty_subset_are_503() -> None:
    mesh = FakeMesh(
        config=vs(
            """
  - match: [{uri: {prefix: /nosuch}}]
    route: [{destination: {host: reviews, subset: v9}}]
  - route: [{destination: {host: reviews, subset: v3}}]
"""
        )
        + """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v3, labels: {version: v3}}]
"""
    )
    mesh.add("productpage", "productpage-1", service_account="productpage")
    mesh.add("reviews", "reviews-v1", service_account="reviews")
    pilots = mesh.pilots()
    missing = run(pilots, "GET http://reviews/nosuch")
    assert (missing.outcome, missing.status) == ("error", 503)
    assert "no cluster 'outbound|9080|v9|reviews.default.svc.cluster.local'" in missing.detail
    empty = run(pilots, "GET http://reviews/")
    assert (empty.outcome, empty.status) == ("error", 503)
    assert "no healthy endpoint" in empty.detail


# --- mTLS ---


PEER_STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
"""


def test_plaintext_source_permissive_and_strict() -> None:
    permissive = run(shop(source_mtls=False), "GET http://reviews/")
    assert permissive.outcome == "allowed" and permissive.principal is None
    assert permissive.destinations[0].upstream.mode == "plaintext"
    assert permissive.destinations[0].checks[0].inbound is not None
    assert permissive.destinations[0].checks[0].inbound.chain == "plaintext"
    assert "identity none (sends plaintext)" in render(permissive)
    strict = run(shop(PEER_STRICT, source_mtls=False), "GET http://reviews/")
    assert (strict.outcome, strict.status, strict.exit_code) == ("refused", 503, 1)
    assert "STRICT and the source sends plaintext" in strict.detail
    assert run(shop(PEER_STRICT), "GET http://reviews/").outcome == "allowed"


def test_destination_without_mtls_gets_plaintext_and_disable_refuses_istio_mutual() -> None:
    mesh = FakeMesh(config="")
    mesh.add("productpage", "productpage-1", service_account="productpage")
    mesh.add("ratings", "ratings-1", mtls=False)
    report = run(mesh, "GET http://ratings/")
    check = report.destinations[0].checks[0]
    assert check.tls == "plaintext" and report.outcome == "allowed"
    assert check.inbound is not None and check.inbound.mode == "DISABLE"
    forced = shop(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-tls, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: plain, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: DISABLE}
"""
    )
    refused = run(forced, "GET http://reviews/")
    assert refused.destinations[0].upstream.mode in ("ISTIO_MUTUAL", "auto mTLS")
    assert refused.outcome == "refused" and "DISABLE and the source sends mTLS" in refused.detail


# --- authorization ---


def test_allow_by_principal_and_deny_the_rest() -> None:
    config = policy(
        "viewers",
        """  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]
    to: [{operation: {methods: [GET]}}]""",
    )
    mesh = shop(config)
    mesh.add("ratings", "ratings-1", service_account="ratings")
    pilots = mesh.pilots()
    ok = run(pilots, "GET http://reviews/")
    assert ok.outcome == "allowed"
    assert "allowed by AuthorizationPolicy default/viewers rules[0]" in ok.detail
    post = run(pilots, "POST http://reviews/")
    assert (post.outcome, post.status, post.exit_code) == ("denied", 403, 1)
    other = run(pilots, "GET http://reviews/", source="ratings")
    assert other.principal == "spiffe://cluster.local/ns/default/sa/ratings"
    assert other.outcome == "denied" and "no ALLOW rule matches" in other.detail
    plain = run(shop(config, source_mtls=False), "GET http://reviews/")
    assert plain.outcome == "denied"  # no mTLS: no principal


def test_deny_wins_and_names_the_policy() -> None:
    config = (
        policy(
            "no-admin",
            """  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]""",
        )
        + "---\n"
        + policy("all", "  rules: [{}]")
    )
    pilots = shop(config).pilots()
    denied = run(pilots, "GET http://reviews/admin/x")
    assert denied.outcome == "denied"
    assert denied.detail == "denied by AuthorizationPolicy default/no-admin rules[0]"
    steps = denied.destinations[0].checks[0].inbound
    assert steps is not None and steps.steps[-1].filter == "envoy.filters.http.rbac.deny"
    assert run(pilots, "GET http://reviews/public").outcome == "allowed"


def test_allow_nothing_policy() -> None:
    report = run(
        shop(policy("nothing", "  selector: {matchLabels: {app: reviews}}")), "GET http://reviews/"
    )
    assert report.outcome == "denied"
    inbound = report.destinations[0].checks[0].inbound
    assert inbound is not None
    rbac = inbound.steps[-1].to_dict()
    assert rbac["effect"] == "deny"


@pytest.mark.parametrize(
    ("rule", "headers", "allowed"),
    [
        ("{from: [{source: {namespaces: [default]}}]}", (), True),
        ("{from: [{source: {namespaces: [other]}}]}", (), False),
        ("{from: [{source: {serviceAccounts: [productpage]}}]}", (), True),
        ("{from: [{source: {notPrincipals: ['*/sa/productpage']}}]}", (), False),
        ("{from: [{source: {ipBlocks: [127.0.0.0/8]}}]}", (), True),
        ("{from: [{source: {ipBlocks: [10.0.0.0/8]}}]}", (), False),
        ("{to: [{operation: {hosts: [REVIEWS]}}]}", (), True),
        ("{to: [{operation: {notPaths: ['/api*']}}]}", (), False),
        ("{to: [{operation: {paths: ['/api/{*}/items']}}]}", (), False),
        ("{when: [{key: 'request.headers[x-tier]', values: [gold]}]}", ("x-tier: gold",), True),
        ("{when: [{key: 'request.headers[x-tier]', values: [gold]}]}", (), False),
        ("{when: [{key: source.namespace, notValues: [default]}]}", (), False),
    ],
)
def test_authorization_attributes(rule: str, headers: tuple[str, ...], allowed: bool) -> None:
    config = policy("p", f"  selector: {{matchLabels: {{app: reviews}}}}\n  rules: [{rule}]")
    report = run(shop(config), "GET http://reviews/api/v1", *headers)
    assert (report.outcome == "allowed") is allowed, report.detail


def test_dry_run_and_audit_are_reported_not_enforced() -> None:
    config = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-deny
  namespace: default
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules: [{}]
---
""" + policy("audit", "  action: AUDIT\n  rules: [{}]")
    report = run(shop(config), "GET http://reviews/")
    assert report.outcome == "allowed"
    inbound = report.destinations[0].checks[0].inbound
    assert inbound is not None
    effects = {s.filter: (s.effect, s.detail) for s in inbound.steps}
    assert effects["envoy.filters.http.rbac.audit"][0] == "log"
    assert effects["envoy.filters.http.rbac.deny"] == (
        "pass",
        "dry run (DENY) matches AuthorizationPolicy default/would-deny rules[0]",
    )


JWKS = (
    '{"keys":[{"kty":"EC","crv":"P-256","kid":"k",'
    '"x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",'
    '"y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}'
)
JWT = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: https://issuer.example
    audiences: [shop]
    jwks: '{JWKS}'
---
""".replace("{JWKS}", JWKS)


def test_jwt_claims_with_request_principals() -> None:
    config = JWT + policy(
        "users",
        """  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]
    when: [{key: "request.auth.claims[groups]", values: [admins]}]""",
    )
    pilots = shop(config).pilots()
    missing = run(pilots, "GET http://reviews/")
    assert (missing.outcome, missing.status) == ("unauthenticated", 401)
    assert "Jwt is missing" in missing.detail
    good = {"iss": "https://issuer.example", "sub": "alice", "aud": "shop", "groups": ["admins"]}
    assert run(pilots, "GET http://reviews/", claims=good).outcome == "allowed"
    not_admin = run(pilots, "GET http://reviews/", claims={**good, "groups": ["users"]})
    assert (not_admin.outcome, not_admin.status) == ("denied", 403)
    wrong_aud = run(pilots, "GET http://reviews/", claims={**good, "aud": "other"})
    assert wrong_aud.status == 401 and "Audiences" in wrong_aud.detail
    wrong_iss = run(pilots, "GET http://reviews/", claims={**good, "iss": "https://evil"})
    assert wrong_iss.status == 401 and "issuer" in wrong_iss.detail
    no_iss = run(
        pilots, "GET http://reviews/", claims={"sub": "a", "aud": "shop", "groups": "admins"}
    )
    assert no_iss.outcome == "allowed"
    inbound = no_iss.destinations[0].checks[0].inbound
    assert inbound is not None and "no iss claim given" in inbound.notes[0]


def test_jwt_optional_and_space_delimited_scope() -> None:
    config = JWT + policy(
        "scoped",
        """  selector: {matchLabels: {app: reviews}}
  rules:
  - to: [{operation: {methods: [GET]}}]
  - when: [{key: "request.auth.claims[scope]", values: [write]}]""",
    )
    pilots = shop(config).pilots()
    assert run(pilots, "GET http://reviews/").outcome == "allowed"  # no token is fine
    claims = {"iss": "https://issuer.example", "aud": "shop", "scope": "read write"}
    assert run(pilots, "POST http://reviews/", claims=claims).outcome == "allowed"
    claims["scope"] = "read"
    assert run(pilots, "POST http://reviews/", claims=claims).outcome == "denied"


def test_claims_without_request_authentication_are_not_seen() -> None:
    config = policy(
        "claims",
        """  selector: {matchLabels: {app: reviews}}
  rules: [{when: [{key: "request.auth.claims[groups]", values: [admins]}]}]""",
    )
    report = run(shop(config), "GET http://reviews/", claims={"groups": "admins"})
    assert report.outcome == "denied"
    inbound = report.destinations[0].checks[0].inbound
    assert inbound is not None
    jwt = next(s for s in inbound.steps if s.kind == "jwt_authn")
    assert "RBAC sees no claims" in jwt.detail


PROVIDERS = """
- name: authz-http
  envoyExtAuthzHttp: {service: ext-authz.default.svc.cluster.local, port: 9080}
"""


def test_custom_policy_hands_over_to_the_external_authorizer() -> None:
    config = policy(
        "ext",
        """  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: authz-http}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]""",
    )
    mesh = shop(config, providers=PROVIDERS)
    mesh.add("ext-authz", "ext-authz-1")
    pilots = mesh.pilots()
    admin = run(pilots, "GET http://reviews/admin")
    assert (admin.outcome, admin.exit_code) == ("external", 1)
    assert "outbound|9080||ext-authz.default.svc.cluster.local" in admin.detail
    inbound = admin.destinations[0].checks[0].inbound
    assert inbound is not None
    step = next(s for s in inbound.steps if s.kind == "ext_authz")
    assert step.to_dict()["policies"] == [
        "AuthorizationPolicy default/ext rules[0] (CUSTOM, provider authz-http)"
    ]
    assert run(pilots, "GET http://reviews/public").outcome == "allowed"


def test_custom_policy_without_provider_is_a_deny() -> None:
    config = policy(
        "ext",
        """  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: nowhere}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]""",
    )
    report = run(shop(config), "GET http://reviews/admin")
    assert (
        report.outcome == "denied" and "AuthorizationPolicy default/ext rules[0]" in report.detail
    )


# --- crafted dumps: what Pilot does not send today, Envoy still does ---


def _pilots_with(mesh: FakeMesh, edit: Any) -> Pilots:
    dumps = mesh.dumps()
    edit(dumps)
    syncz = mesh.syncz()

    def fetch(host: str, port: int, path: str) -> Any:
        if path == "/debug/syncz":
            return syncz
        return dumps[path.rsplit("=", 1)[1]]

    return Pilots([("h", 1)], fetch)


def test_missing_filter_config_is_a_500() -> None:
    pilots = _pilots_with(shop(), lambda d: d["reviews-v1"].update(ecds=[]))
    report = run(pilots, "GET http://reviews/")
    v1 = next(c for c in report.destinations[0].checks if c.proxy == "reviews-v1")
    assert v1.inbound is not None and (v1.inbound.outcome, v1.inbound.status) == ("error", 500)
    assert report.destinations[0].outcome == "mixed"
    assert report.exit_code == 1


RBAC_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"


def test_route_level_rbac_override() -> None:
    mesh = shop(policy("nothing", "  selector: {matchLabels: {app: reviews}}"))

    def override(dumps: dict[str, Any]) -> None:
        for name in ("reviews-v1", "reviews-v2"):
            for lis in dumps[name]["lds"]:
                for chain in lis.get("filterChains", []):
                    hcm = chain["filters"][0]["typedConfig"]
                    for route in (
                        hcm.get("routeConfig", {}).get("virtualHosts", [{}])[0].get("routes", [])
                    ):
                        route["typedPerFilterConfig"] = {
                            "envoy.filters.http.rbac": {"@type": RBAC_PER_ROUTE}
                        }

    report = run(_pilots_with(mesh, override), "GET http://reviews/")
    assert report.outcome == "allowed"


def test_unsupported_matcher_is_a_note_not_a_guess() -> None:
    def cel(dumps: dict[str, Any]) -> None:
        for item in dumps["reviews-v1"]["ecds"]:
            if item["name"] == "envoy.filters.http.rbac.deny":
                item["typedConfig"]["rules"] = {
                    "action": "DENY",
                    "policies": {
                        "custom": {
                            "permissions": [{"any": True}],
                            "principals": [{"filterState": {}}],
                        }
                    },
                }

    report = run(_pilots_with(shop(), cel), "GET http://reviews/")
    v1 = next(c for c in report.destinations[0].checks if c.proxy == "reviews-v1")
    assert v1.inbound is not None and "cannot evaluate" in v1.inbound.notes[0]


# --- inputs and Pilots ---


@pytest.mark.parametrize(
    ("line", "headers", "message"),
    [
        ("", (), "expected 'METHOD"),
        ("GET http://reviews/ extra", (), "expected 'METHOD"),
        ("get http://reviews/", (), "is not an HTTP method"),
        ("GET https://reviews/", (), "must be http://"),
        ("GET reviews/", (), "must be http://"),
        ("GET http:///x", (), "no host"),
        ("GET http://reviews:99999/", (), "Port out of range"),
        ("GET http://reviews/", ("no-colon",), "expected 'Name: value'"),
        ("GET http://reviews/", ("bad name: x",), "expected 'Name: value'"),
        ("GET http://reviews/", ("Host: ",), "Host header is empty"),
    ],
)
def test_bad_requests(line: str, headers: tuple[str, ...], message: str) -> None:
    with pytest.raises(ExplainInputError, match=message):
        parse_request(line, headers)


def test_request_forms() -> None:
    r = parse_request("http://Reviews:9080/a?b=1", ["End-User: jason", "X-A: 1", "x-a: 2"])
    assert (r.method, r.authority, r.path) == ("GET", "reviews:9080", "/a?b=1")
    assert r.header_map()["x-a"] == ["1", "2"] and r.header_map()[":authority"] == ["reviews:9080"]


def test_claims() -> None:
    assert parse_claims(["iss=i", "groups=a", "groups=b", "org.team=x", "aud=https://a=b"]) == {
        "iss": "i",
        "groups": ["a", "b"],
        "org": {"team": "x"},
        "aud": "https://a=b",
    }
    for bad in ("novalue", "=x", "a..b=x"):
        with pytest.raises(ExplainInputError, match="KEY=VALUE"):
            parse_claims([bad])
    with pytest.raises(ExplainInputError, match="already"):
        parse_claims(["a=1", "a.b=2"])


def test_source_resolution() -> None:
    mesh = shop()
    mesh.add("productpage", "productpage-2", service_account="productpage")
    mesh.add("reviews", "reviews-other", namespace="other", service_account="reviews")
    pilots = mesh.pilots()
    by_id = run(pilots, "GET http://reviews/", source="productpage-2")
    assert by_id.source["proxy"] == "productpage-2" and by_id.notes == []
    by_service = run(pilots, "GET http://reviews/", source="productpage.default")
    assert by_service.source["proxy"] == "productpage-1"
    assert "productpage.default has 2 connected proxies" in by_service.notes[0]
    with pytest.raises(ExplainInputError, match="namespaces default, other"):
        run(pilots, "GET http://reviews/", source="reviews")
    with pytest.raises(
        ExplainInputError,
        match=r"no connected proxy or service of that name \(connected: productpage.default, "
        r"reviews.default, reviews.other\)",
    ):
        run(pilots, "GET http://reviews/", source="nosuch")


def test_a_source_without_outbound_listener() -> None:
    def no_outbound(dumps: dict[str, Any]) -> None:
        dumps["productpage-1"]["lds"] = [
            lis for lis in dumps["productpage-1"]["lds"] if not lis["name"].startswith("outbound_")
        ]

    with pytest.raises(ExplainInputError, match="no outbound HTTP listener"):
        run(_pilots_with(shop(), no_outbound), "GET http://reviews/")
    with pytest.raises(ExplainInputError, match="no listener 'x' on the source proxy"):
        explain.explain(
            shop().pilots(),
            "productpage",
            parse_request("GET http://reviews/"),
            {},
            explain.Options(listener="x"),
        )


def test_replicas_each_asked_until_the_proxy_is_found() -> None:
    mesh = shop()
    dumps = mesh.dumps()
    proxies = mesh.syncz()["proxies"]
    calls: list[tuple[int, str]] = []

    def fetch(host: str, port: int, path: str) -> Any:
        calls.append((port, path))
        if port == 1:
            raise ExplainError("pilot at h:1: connection refused")
        mine = [p for p in proxies if (p["proxy"] == "productpage-1") == (port == 2)]
        if path == "/debug/syncz":
            return {"proxies": mine}
        proxy = path.rsplit("=", 1)[1]
        if proxy not in {p["proxy"] for p in mine}:
            raise LookupError(proxy)
        return dumps[proxy]

    pilots = Pilots([("h", 1), ("h", 2), ("h", 3)], fetch)
    report = run(pilots, "GET http://reviews/")
    assert report.outcome == "allowed" and len(report.destinations[0].checks) == 2
    assert (2, "/debug/config_dump?proxy=productpage-1") in calls
    assert (3, "/debug/config_dump?proxy=reviews-v1") in calls
    down = Pilots([("h", 1)], fetch)
    with pytest.raises(ExplainError, match="connection refused"):
        run(down, "GET http://reviews/")


# --- the CLI ---


def _cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mesh: FakeMesh, *argv: str
) -> tuple[int, str, str]:
    dumps, syncz = mesh.dumps(), mesh.syncz()

    def fetch(host: str, port: int, path: str) -> Any:
        assert (host, port) == ("127.0.0.1", 15999)
        if path == "/debug/syncz":
            return syncz
        return dumps[path.rsplit("=", 1)[1]]

    monkeypatch.setattr(explain, "http_fetch", fetch)
    code = cli.main(["explain", "--pilot-http=127.0.0.1:15999", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_exit_codes_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = policy(
        "no-admin", '  action: DENY\n  rules: [{to: [{operation: {paths: ["/admin"]}}]}]'
    )
    mesh = shop(config)
    code, out, _ = _cli(monkeypatch, capsys, mesh, "--from", "productpage", "GET http://reviews/")
    assert code == 0 and "verdict     ALLOWED" in out
    code, out, _ = _cli(
        monkeypatch, capsys, mesh, "--from=productpage-1", "GET http://reviews/admin", "-o", "json"
    )
    body = json.loads(out)
    assert code == 1 and body["verdict"] == {
        "outcome": "denied",
        "status": 403,
        "detail": "denied by AuthorizationPolicy default/no-admin rules[0]",
    }
    assert body["destinations"][0]["endpoints"][0]["inbound"]["mtls_mode"] == "PERMISSIVE"
    code, out, err = _cli(monkeypatch, capsys, mesh, "--from", "nosuch", "GET http://reviews/")
    assert code == 2 and out == "" and "meshctl explain: --from 'nosuch'" in err
    code, _, err = _cli(monkeypatch, capsys, mesh, "--from", "productpage", "GET ftp://x/")
    assert code == 2 and "must be http://" in err
    code, _, err = _cli(
        monkeypatch, capsys, mesh, "--from", "productpage", "GET http://reviews/", "--claim", "x"
    )
    assert code == 2 and "KEY=VALUE" in err


def test_cli_pilot_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    from meshctl.procs import free_port

    code = cli.main(
        ["explain", f"--pilot-http=127.0.0.1:{free_port()}", "--from", "x", "GET http://r/"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "meshctl explain: pilot at 127.0.0.1:" in err


def test_a_proxy_that_has_not_applied_its_config_is_flagged() -> None:
    mesh = shop()
    dumps, syncz = mesh.dumps(), mesh.syncz()
    for proxy in syncz["proxies"]:
        proxy["types"] = {"rds": {"version_sent": "2", "version_acked": "2"}}
        if proxy["proxy"] == "reviews-v2":
            proxy["types"]["ecds"] = {"version_sent": "3", "version_acked": "2", "nack": "bad"}

    def fetch(host: str, port: int, path: str) -> Any:
        return syncz if path == "/debug/syncz" else dumps[path.rsplit("=", 1)[1]]

    report = run(Pilots([("h", 1)], fetch), "GET http://reviews/")
    assert report.notes == [
        "reviews-v2: ecds STALE (NACK): Envoy may still run older config than explained here"
    ]
