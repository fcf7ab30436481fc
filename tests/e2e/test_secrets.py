"""The proxy credential reads every org's snapshot, so it must not lie in the open: through a
real Envoy, a filter given it in Envoy's environment (`credential_env`, as `make run` does)
fetches and verifies snapshots while Envoy's admin endpoint prints nothing of it, where one
given it inline has it printed by `/config_dump`; and the files the stack writes are the
owner's only."""

import stat

from conftest import RUN_DIR, wait_for_snapshot
from devstack import filterconfig


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def admin_pages(deployment) -> str:
    # Everything the admin endpoint hands anyone who reaches it, configuration and all.
    return "\n".join(deployment.proxy.admin(page) for page in
                     ("/config_dump", "/config_dump?include_eds", "/stats", "/clusters", "/server_info"))


def test_a_credential_from_the_environment_is_not_in_config_dump(dev, demo, pki):
    assert wait_for_snapshot(dev) > 0
    dump = dev.proxy.admin("/config_dump")
    assert filterconfig.CREDENTIAL_ENV in dump, "the dump does not show the filter's VM configuration"
    assert demo.proxy_credential not in admin_pages(dev)
    # With it the filter is authorised: a bound card gets its identity.
    answer = dev.client.get("/mtls/hello", card=pki.card("demo-card"))
    assert answer.status == 200, answer.body


def test_an_inline_credential_is_in_config_dump(deploy, demo):
    # What the environment route avoids: the same secret written in the plugin configuration.
    inline = deploy("inline-credential", filterconfig.render(filterconfig.policy(), snapshot=demo.snapshot_source()))
    wait_for_snapshot(inline)
    assert demo.proxy_credential in inline.proxy.admin("/config_dump")


def test_the_stack_writes_its_secrets_for_its_owner_only(dev, demo, pki):
    state = demo.cp.state
    assert mode(state) == 0o700
    for name in ("certbind.db", "certbind.db-wal"):
        assert mode(state / name) == 0o600, name
    assert mode(state / "softhsm") == 0o700
    assert mode(RUN_DIR / "dev.yaml") == 0o600
    assert mode(pki.dir) == 0o700
    assert mode(pki.dir / "demo-card.key") == 0o600
    assert mode(RUN_DIR / "issuer" / "issuer.key") == 0o600
    assert mode(RUN_DIR / "logs") == 0o700
