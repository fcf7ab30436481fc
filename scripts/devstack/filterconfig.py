"""The certbind filter's plugin configuration for the development stack (docs/filter.md).

The demo routes, one per mode:

    /public/*   bearer                       a token, no card
    /mtls/*     mtls, enrolled card required the card alone, and it must be bound
    /api/*      bearer_plus_mtls_optional    a token; on /api/execute and below it must be bound to the card
    /secure/*   bearer_plus_mtls_required    card and bound token, always
    anything else: bearer_plus_mtls_required (the strictest mode is the default)
"""

from __future__ import annotations

import json

from . import tokens

DEMO_ROUTES = [
    {"path": "/public/*", "mode": "bearer"},
    {"path": "/mtls/*", "mode": "mtls", "require_enrolled_card": True},
    # A prefix: `/api/execute/x` needs the binding too (an exact pattern covers `/api/execute`
    # and `/api/execute/` only, and upstreams often route deeper paths to the same handler).
    {"path": "/api/*", "mode": "bearer_plus_mtls_optional", "sender_binding_required_paths": ["/api/execute*"]},
    {"path": "/secure/*", "mode": "bearer_plus_mtls_required"},
]


def policy(*, source: dict | None = None, trusted_proxies: list[str] | None = None, routes=None,
           default_mode: str = "bearer_plus_mtls_required", **extra) -> dict:
    """`source` defaults to Envoy's own XFCC, cross-checked against the connection."""
    value = {
        "certificate_source": source or {"kind": "xfcc", "trust": "this_proxy"},
        "default_mode": default_mode,
        "routes": DEMO_ROUTES if routes is None else routes,
        "token": {"audiences": [tokens.AUDIENCE]},
    }
    if trusted_proxies:
        value["trusted_proxies"] = trusted_proxies
    value.update(extra)
    return value


# A snapshot older than this when it arrives is refused (`too_old`): after a restart the proxy
# holds nothing, and without a limit any unexpired snapshot, a replayed one too, would do. The
# control plane re-signs an idle snapshot at half its validity (12 h of the default 24 h), so
# 13 h leaves an hour's margin.
MAX_AGE_SECONDS = 46800


# The Envoy process's environment variable that carries the proxy credential into the
# filter's VM (`vm_config.environment_variables.host_env_keys`): unlike the plugin
# configuration, its value is not printed by Envoy's admin endpoint (`/config_dump`).
CREDENTIAL_ENV = "CERTBIND_PROXY_CREDENTIAL"


def snapshot(public_key_pem: str, credential: str | None, *, cluster: str = "certbind_control_plane",
             authority: str = "127.0.0.1:8080", long_poll_seconds: int = 30,
             max_age_seconds: int = MAX_AGE_SECONDS, credential_env: str | None = None, **control_plane) -> dict:
    """The signed snapshot, fetched from the control plane through an Envoy cluster and
    verified against the pinned key (`certbind key init` prints it). The proxy credential is
    given inline (`credential`) or named by the environment variable that holds it
    (`credential_env`, with `credential` None)."""
    source = {"credential_env": credential_env} if credential_env else {"credential": credential}
    return {"pinned_keys": [public_key_pem], "max_age_seconds": max_age_seconds,
            "control_plane": {"cluster": cluster, "authority": authority, **source,
                              "long_poll_seconds": long_poll_seconds, **control_plane}}


def inline_identity(*, bindings=(), issuer_jwks: dict | None = None, blocklist=(), revoked=()) -> dict:
    """Unsigned identity data given in the configuration itself (`development_identity`, no
    control plane): bindings as (fingerprint hex, user id, org id)."""
    identity: dict = {"bindings": [{"fingerprint": f, "user_id": u, "org_id": o} for f, u, o in bindings]}
    if issuer_jwks is not None:
        identity["issuers"] = [{"issuer": tokens.ISSUER, "jwks": issuer_jwks}]
    if blocklist:
        identity["blocklist"] = list(blocklist)
    if revoked:
        identity["revoked"] = [{"issuer_dn": dn, "serial": s} for dn, s in revoked]
    return identity


def render(policy_value: dict, identity: dict | None = None, *, snapshot: dict | None = None) -> str:
    """The plugin configuration: the policy, and one identity source."""
    config: dict = {"policy": policy_value}
    if snapshot is not None:
        config["snapshot"] = snapshot
    if identity is not None:
        config["development_identity"] = identity
    return json.dumps(config, separators=(",", ":"))
