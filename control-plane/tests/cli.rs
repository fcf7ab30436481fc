//! The command line: `serve` in an empty directory, the admin commands, and configuration
//! errors that name the setting at fault.

mod common;

use common::http1;
use common::process::{run, run_ok, Server};

#[tokio::test]
async fn serve_in_an_empty_directory_starts_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let r = http1(server.addr, "GET", "/healthz", &[], &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(dir.path().join("certbind.db").is_file(), "no SQLite file in the working directory");
    // The database holds every org's bindings and the token hashes: the owner's only, and so
    // are the WAL and shared-memory files SQLite makes beside it.
    #[cfg(unix)]
    for name in ["certbind.db", "certbind.db-wal", "certbind.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
    // Without a token the admin API refuses, with the problem+json contract.
    http1(server.addr, "GET", "/api/v1/admin/smartcards", &[], &[]).await.unwrap().problem(401);
}

#[tokio::test]
async fn admin_commands_bootstrap_an_org_whose_token_works() {
    let dir = tempfile::tempdir().unwrap();
    let env: [(&str, &str); 0] = [];
    assert!(run_ok(dir.path(), &env, &["migrate"]).contains("sqlite"));
    let org_id = run_ok(dir.path(), &env, &["org", "create", "acme"]);
    assert_eq!(org_id.len(), 26);
    let dup = run(dir.path(), &env, &["org", "create", "acme"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let user_id = run_ok(dir.path(), &env, &["user", "create", "--org", "acme", "--email", "alice@acme.example", "alice"]);
    // By id as well as by name.
    run_ok(dir.path(), &env, &["user", "create", "--org", &org_id, "bob"]);
    let token = run_ok(dir.path(), &env, &["token", "create", "--org", "acme", "--super-admin"]);
    assert!(token.starts_with("cbt_"));
    assert!(run_ok(dir.path(), &env, &["org", "list"]).contains(&format!("{org_id}\tacme")));
    run_ok(dir.path(), &env, &["org", "assign-domain", "--org", "acme", "Acme.Example"]);
    run_ok(dir.path(), &env, &["org", "assign-domain", "--org", &org_id, "mil"]);
    assert_eq!(run_ok(dir.path(), &env, &["org", "domains", "--org", "acme"]), "acme.example\nmil");
    run_ok(dir.path(), &env, &["org", "unassign-domain", "--org", "acme", "mil"]);
    assert_eq!(run_ok(dir.path(), &env, &["org", "domains", "--org", "acme"]), "acme.example");
    let missing = run(dir.path(), &env, &["user", "create", "--org", "nope", "carol"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--org"));

    let server = Server::start(dir.path(), &env);
    let auth = format!("Bearer {token}");
    let users = http1(server.addr, "GET", "/api/v1/admin/users", &[("authorization", &auth)], &[]).await.unwrap();
    assert_eq!(users.status, 200);
    assert_eq!(users.json()["items"][0]["id"], user_id.as_str());
    let orgs = http1(server.addr, "GET", "/api/v1/admin/orgs", &[("authorization", &auth)], &[]).await.unwrap();
    assert_eq!(orgs.json()["items"][0]["id"], org_id.as_str());
}

#[test]
fn bad_settings_are_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("typo.toml"), "lisen = \"127.0.0.1:1\"\n").unwrap();
    std::fs::write(dir.path().join("bad.toml"), "database_url = \"mysql://db\"\n").unwrap();
    /// (environment, arguments, what the error must name)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("CERTBIND_LISTEN", "nowhere")], &["serve"], "CERTBIND_LISTEN"),
        (&[], &["serve", "--listen", "300.0.0.1:80"], "--listen"),
        (&[("DATABASE_URL", "mysql://db")], &["migrate"], "DATABASE_URL"),
        (&[("CERTBIND_MAX_BODY_BYTES", "huge")], &["migrate"], "CERTBIND_MAX_BODY_BYTES"),
        (&[("CERTBIND_PKCS11_MODULE", "/nonexistent/libsofthsm2.so")], &["migrate"], "CERTBIND_PKCS11_MODULE"),
        (&[], &["--config", "missing.toml", "migrate"], "missing.toml"),
        (&[], &["--config", "typo.toml", "migrate"], "lisen"),
        (&[], &["--config", "bad.toml", "migrate"], "bad.toml: database_url"),
        (&[("CERTBIND_CONFIG", "bad.toml")], &["migrate"], "bad.toml: database_url"),
        (&[], &["key", "init"], "CERTBIND_PKCS11_MODULE"),
        (&[], &["snapshot", "export", "out.snap"], "signer.module"),
    ];
    for (env, args, named) in cases {
        let out = run(dir.path(), env, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?} with {env:?}: {stderr:?} does not name {named}");
    }
    assert!(!dir.path().join("certbind.db").exists() || dir.path().join("certbind.db").is_file());
}

/// The whole path with a real PKCS#11 token (SoftHSM2 in a private directory): `key init`,
/// `serve` signing snapshots, a bind and a revoke reaching the served snapshot through the
/// long-poll, and `snapshot export` — every snapshot checked by the filter's own verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_signed_snapshots_end_to_end() {
    use certbind_control_plane::signer::pkcs11::{init_softhsm_token, SOFTHSM2_MODULE};
    use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier};

    if !std::path::Path::new(SOFTHSM2_MODULE).is_file() {
        if std::env::var_os("CI").is_some() {
            panic!("{SOFTHSM2_MODULE} missing: run scripts/setup.sh");
        }
        common::shout("SKIPPED hsm_signed_snapshots_end_to_end: SoftHSM2 is not installed (apt-get install softhsm2)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = init_softhsm_token(&dir.path().join("hsm"), "certbind-test", "so-pin-1234", "user-pin-1234").unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let env = [
        ("SOFTHSM2_CONF", conf.as_str()),
        ("CERTBIND_PKCS11_MODULE", SOFTHSM2_MODULE),
        ("CERTBIND_PKCS11_TOKEN_LABEL", "certbind-test"),
        ("CERTBIND_PKCS11_PIN", "user-pin-1234"),
    ];
    let key: serde_json::Value = serde_json::from_str(&run_ok(dir.path(), &env, &["key", "init"])).unwrap();
    let again = run(dir.path(), &env, &["key", "init"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already present"));
    let pinned = PinnedKey::from_pem(key["public_key_pem"].as_str().unwrap()).unwrap();
    assert_eq!(pinned.key_id(), key["key_id"].as_str().unwrap());
    let verifier = SnapshotVerifier::new([pinned]).unwrap();
    let now = certbind_shared::clock::now_seconds();

    run_ok(dir.path(), &env, &["org", "create", "acme"]);
    let user = run_ok(dir.path(), &env, &["user", "create", "--org", "acme", "alice"]);
    let token = run_ok(dir.path(), &env, &["token", "create", "--org", "acme"]);
    let proxy = run_ok(dir.path(), &env, &["token", "create", "--proxy", "--label", "edge-1"]);
    assert!(proxy.starts_with("cbp_"), "{proxy}");
    assert!(run_ok(dir.path(), &env, &["token", "list", "--proxy"]).contains("edge-1"));
    // `--org` beside `--proxy` is accepted (a proxy credential belongs to no org).
    assert!(run_ok(dir.path(), &env, &["token", "create", "--org", "acme", "--proxy", "--label", "edge-2"]).starts_with("cbp_"));
    // Trust an issuer for every org, from a JWKS file.
    std::fs::write(dir.path().join("idp.jwks"), include_str!("../../shared/tests/vectors/jwt/issuer-jwks.json")).unwrap();
    let issuer = run_ok(dir.path(), &env, &["issuer", "add", "--platform", "--issuer", "https://idp.example.mil", "--jwks", "idp.jwks", "--audience", "api"]);
    assert_eq!(issuer.len(), 26, "{issuer}");
    let server = Server::start(dir.path(), &env);
    let auth = format!("Bearer {token}");
    let fetch = format!("Bearer {proxy}");
    let with_proxy = [("authorization", fetch.as_str())];

    let ready = http1(server.addr, "GET", "/readyz", &[], &[]).await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());
    let keys = http1(server.addr, "GET", "/api/v1/snapshot/keys", &[], &[]).await.unwrap().json();
    assert_eq!(keys["keys"][0]["key_id"], key["key_id"]);
    // Only a proxy credential reads the snapshot.
    http1(server.addr, "GET", "/api/v1/snapshot", &[], &[]).await.unwrap().problem(401);
    http1(server.addr, "GET", "/api/v1/snapshot", &[("authorization", &auth)], &[]).await.unwrap().problem(403);
    let first = http1(server.addr, "GET", "/api/v1/snapshot", &with_proxy, &[]).await.unwrap();
    assert_eq!(first.status, 200);
    let first = verifier.verify(first.body, now, None).expect("first snapshot verifies");
    assert_eq!(first.binding_count(), 0);
    assert_eq!(first.issuers().map(|i| i.issuer.to_string()).collect::<Vec<_>>(), vec!["https://idp.example.mil"]);

    // A bind, then a long-poll from the version held: the new snapshot carries the binding,
    // under a version after the bind's.
    let fp = common::fingerprint(1);
    let body = serde_json::to_vec(&common::bind_body(&user, &fp)).unwrap();
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let bound = http1(server.addr, "POST", "/api/v1/admin/smartcards", &headers, &body).await.unwrap();
    assert_eq!(bound.status, 201, "{}", bound.text());
    let poll = format!("/api/v1/snapshot?wait=10&after_version={}", first.version());
    let second = http1(server.addr, "GET", &poll, &with_proxy, &[]).await.unwrap();
    assert_eq!(second.status, 200);
    let second = verifier.verify(second.body, now, Some(first.version())).expect("second snapshot verifies");
    assert!(second.version() > bound.version() as u64);
    let (bound_fp, binding) = second.bindings().next().expect("the binding");
    assert_eq!((bound_fp.to_hex(), binding.user_id.as_str(), binding.enabled), (fp.clone(), user.as_str(), true));

    // A revoke reaches the served snapshot within a second of its 200.
    let revoked = http1(server.addr, "DELETE", &format!("/api/v1/admin/smartcards/{fp}"), &[("authorization", &auth)], &[]).await.unwrap();
    assert_eq!(revoked.status, 200);
    let answered = std::time::Instant::now();
    let poll = format!("/api/v1/snapshot?wait=10&after_version={}", second.version());
    let third = http1(server.addr, "GET", &poll, &with_proxy, &[]).await.unwrap();
    assert!(answered.elapsed() < std::time::Duration::from_secs(1), "revoke took {:?} to be served", answered.elapsed());
    let third = verifier.verify(third.body, now, Some(second.version())).expect("third snapshot verifies");
    assert!(third.version() > revoked.version() as u64);
    assert_eq!(third.binding_count(), 0);

    // A card bound from the command line while the server runs reaches the snapshot too (the
    // server reads the change from the snapshot log).
    std::fs::write(dir.path().join("card.pem"), common::cac_doe().pem).unwrap();
    let card = run_ok(dir.path(), &env, &["card", "bind", "--org", "acme", "--user", "alice", "--pem", "card.pem", "--label", "CAC"]);
    assert_eq!(card, common::cac_doe().facts["fingerprint"].as_str().unwrap());
    let poll = format!("/api/v1/snapshot?wait=10&after_version={}", third.version());
    let fourth = http1(server.addr, "GET", &poll, &with_proxy, &[]).await.unwrap();
    let fourth = verifier.verify(fourth.body, now, Some(third.version())).expect("fourth snapshot verifies");
    assert_eq!(fourth.bindings().map(|(fp, _)| fp.to_hex()).collect::<Vec<_>>(), vec![card.clone()]);
    drop(server);

    // A restart signs a new snapshot under a higher version, never the old one again.
    let server = Server::start(dir.path(), &env);
    let restarted = http1(server.addr, "GET", "/api/v1/snapshot", &with_proxy, &[]).await.unwrap();
    let restarted = verifier.verify(restarted.body, now, Some(fourth.version())).expect("a restart's snapshot is newer");
    assert!(restarted.version() > fourth.version());
    assert_eq!(restarted.binding_count(), 1);
    drop(server);

    // Export for a site with no path to the control plane: signed under a version of its own.
    let exported = run_ok(dir.path(), &env, &["snapshot", "export", "site.snap"]);
    let bytes = std::fs::read(dir.path().join("site.snap")).unwrap();
    let view = verifier.verify(bytes, now, Some(restarted.version())).expect("exported snapshot verifies");
    assert!(exported.contains(&format!("version {}", view.version())), "{exported}");
    assert_eq!(view.binding_count(), 1);
}

#[test]
fn ca_and_crl_commands_register_load_and_refuse() {
    use certbind_shared::crl::testing::SyntheticCa;
    let dir = tempfile::tempdir().unwrap();
    let env: [(&str, &str); 0] = [];
    let now = certbind_shared::clock::now_seconds();
    let ca = SyntheticCa::new("cli", "CLI Test CA").unwrap();
    std::fs::write(dir.path().join("ca.pem"), common::synthetic_ca::ca_certificate_pem(&ca, ca.name_der(), now)).unwrap();
    let key_id = run_ok(dir.path(), &env, &["ca", "add", "--pem", "ca.pem", "--grace", "600", "--crl-url", "http://crl.example/cli.crl"]);
    assert_eq!(key_id, ca.certificate().key_identifier.to_hex());
    let ldap = run(dir.path(), &env, &["ca", "policy", &key_id, "--crl-url", "ldap://crl.example/cn=CLI"]);
    assert_eq!(ldap.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ldap.stderr).contains("LDAP distribution point"));

    std::fs::write(dir.path().join("5.crl"), ca.synthetic_crl(5, 3, now - 60)).unwrap();
    std::fs::write(dir.path().join("4.crl"), certbind_shared::crl::encode_crl_pem(&ca.synthetic_crl(4, 1, now - 120))).unwrap();
    assert!(run_ok(dir.path(), &env, &["crl", "load", "5.crl"]).contains("CRL number 5 stored, 3 added, 0 removed"));
    let replay = run(dir.path(), &env, &["crl", "load", "4.crl"]);
    assert_eq!(replay.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&replay.stderr).contains("CRL number 4 is below the one held (5)"));
    assert_eq!(run_ok(dir.path(), &env, &["ca", "list"]), format!("{key_id}\tCN=CLI Test CA,O=certbind,C=US\t5\t3\tfresh"));
    run_ok(dir.path(), &env, &["ca", "policy", &key_id, "--no-require-fresh-crl", "--fail-open"]);
    assert!(run_ok(dir.path(), &env, &["ca", "remove", &key_id]).starts_with(&format!("removed CA {key_id}")));
    assert_eq!(run_ok(dir.path(), &env, &["ca", "list"]), "");
}

#[test]
fn orgs_are_disabled_enabled_and_deleted_and_their_tokens_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let env: [(&str, &str); 0] = [];
    let org_id = run_ok(dir.path(), &env, &["org", "create", "acme"]);
    run_ok(dir.path(), &env, &["org", "create", "globex"]);
    run_ok(dir.path(), &env, &["token", "create", "--org", "globex", "--label", "ci"]);
    let listed = run_ok(dir.path(), &env, &["token", "list", "--org", "globex"]);
    let (id, rest) = listed.split_once('\t').unwrap();
    assert_eq!(rest, "admin\tci\tnever used");
    assert_eq!(run_ok(dir.path(), &env, &["token", "delete", "--org", "globex", id]), format!("revoked admin token {id}"));
    assert_eq!(run_ok(dir.path(), &env, &["token", "list", "--org", "globex"]), "");
    // Deleting an enabled org is refused; disabled, it shows so, and can be deleted.
    let refused = run(dir.path(), &env, &["org", "delete", "acme"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("disable the org first"));
    assert_eq!(run_ok(dir.path(), &env, &["org", "disable", "acme"]), format!("disabled org {org_id} (acme)"));
    assert!(run_ok(dir.path(), &env, &["org", "list"]).contains(&format!("{org_id}\tacme\tdisabled")));
    let blocked = run(dir.path(), &env, &["user", "create", "--org", "acme", "carol"]);
    assert!(String::from_utf8_lossy(&blocked.stderr).contains("is disabled"), "{blocked:?}");
    run_ok(dir.path(), &env, &["org", "enable", "acme"]);
    assert!(run_ok(dir.path(), &env, &["org", "list"]).contains(&format!("{org_id}\tacme\n")));
    run_ok(dir.path(), &env, &["org", "disable", "acme"]);
    assert_eq!(run_ok(dir.path(), &env, &["org", "delete", "acme"]), format!("deleted org {org_id} (acme)"));
    assert!(!run_ok(dir.path(), &env, &["org", "list"]).contains("acme"));
}

/// The command line checks what it is given with the API's rules: a platform issuer spelt as
/// the filter spells an org registration's (`org:{org_id}:{iss}`) is refused by both, with the
/// field named, and a blank org name too.
#[test]
fn the_command_line_refuses_what_the_api_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let env: [(&str, &str); 0] = [];
    std::fs::write(dir.path().join("idp.jwks"), include_str!("../../shared/tests/vectors/jwt/issuer-jwks.json")).unwrap();
    let spoof = run(dir.path(), &env, &["issuer", "add", "--platform", "--issuer", "ORG:acme:https://idp.example.mil", "--jwks", "idp.jwks"]);
    assert_eq!(spoof.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&spoof.stderr);
    assert!(stderr.contains("issuer: a platform issuer must not start with `org:`"), "{stderr}");
    let blank = run(dir.path(), &env, &["org", "create", "  "]);
    assert_eq!(blank.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&blank.stderr).contains("name: must not be empty"));
    // The same issuer for an org is an org's own name for it, and taken.
    run_ok(dir.path(), &env, &["org", "create", "acme"]);
    let id = run_ok(dir.path(), &env, &["issuer", "add", "--org", "acme", "--issuer", "org:acme:https://idp.example.mil", "--jwks", "idp.jwks"]);
    assert_eq!(id.len(), 26, "{id}");
}
