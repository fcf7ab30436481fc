//! An existing database upgrades: rows written under the first schema keep working after the
//! owners, proxy credentials and snapshot log arrive, issuer DNs written before they were
//! parsed are put in canonical form, a SAN rule without an issuer stays in the table but out
//! of the snapshot, and bindings from before certificates were kept show their facts as
//! unknown.

mod common;

use certbind_control_plane::db::{snapshot_data, Db, DbOptions};
use certbind_control_plane::domain::{Change, MappingRecord};
use certbind_shared::identity::Claim;
use common::{Store, TestDb};
use sha2::Digest;
use sqlx::Row;

on_every_store!(
    a_first_schema_database_upgrades,
    a_migration_changed_otherwise_than_reworded_is_refused,
    claims_from_before_verification_keep_what_was_seen,
    bindings_from_before_certificates_were_kept_show_their_facts_as_unknown,
);

/// The one line of the first migration reworded since its release, as it was released and
/// as it is: an older release recorded the checksum of the first.
const REWORDED_LINE: (&str, &str) = (
    "-- Exactly the table of seed 000; the fingerprint is 64 lowercase hex digits.",
    "-- A card binding; the fingerprint is the certificate's SHA-256 in 64 lowercase hex digits.",
);

/// The migration `name` of `flavour` as an older release shipped it.
fn as_released(flavour: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(flavour).join(name);
    let text = std::fs::read_to_string(path).unwrap();
    if name.starts_with("0001_") {
        assert!(text.contains(REWORDED_LINE.1), "{name} no longer holds the reworded line");
        return text.replace(REWORDED_LINE.1, REWORDED_LINE.0);
    }
    text
}

/// Applies the migrations of `flavour` up to and including `last` (its number), as an older
/// release shipped and ran them, then runs `statements`.
async fn older_schema(url: &str, flavour: &str, last: u32, statements: &[&str]) {
    older_schema_with(url, flavour, last, statements, |_, text| text).await;
}

/// [`older_schema`], each migration's text first passed through `edit` (its name, its text).
async fn older_schema_with(
    url: &str,
    flavour: &str,
    last: u32,
    statements: &[&str],
    edit: impl Fn(&str, String) -> String,
) {
    let dir = tempfile::tempdir().unwrap();
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(flavour);
    for entry in std::fs::read_dir(&migrations).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.get(..4).and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n <= last) {
            std::fs::write(dir.path().join(&name), edit(&name, as_released(flavour, &name))).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    sqlx::any::install_default_drivers();
    let url = if flavour == "sqlite" { format!("{url}?mode=rwc") } else { url.to_string() };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    migrator.run(&pool).await.unwrap();
    for statement in statements {
        sqlx::query(statement).execute(&pool).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    pool.close().await;
}

/// Applies only the first migration of `flavour`, as an older release did.
async fn first_schema_only(url: &str, flavour: &str) {
    let statements = [
        "INSERT INTO orgs (id, name, created_at) VALUES ('ORG1', 'acme', '2025-01-01T00:00:00Z')",
        "INSERT INTO users (id, org_id, name, created_at) VALUES ('USER1', 'ORG1', 'alice', '2025-01-01T00:00:00Z')",
        "INSERT INTO smart_card_links (fingerprint, user_id, org_id, subject_dn, issuer_dn, serial, not_before, not_after, enabled, created_at) \
         VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'USER1', 'ORG1', 'CN=a', 'CN=CA', '01', \
         '2025-01-01T00:00:00Z', '2030-01-01T00:00:00Z', 1, '2025-01-01T00:00:00Z')",
        "INSERT INTO blocklist (id, org_id, issuer_dn, serial, created_at) VALUES ('B1', 'ORG1', 'C = US, O = Example, CN = Old CA', '0a', '2025-01-01T00:00:00Z')",
        "INSERT INTO blocklist (id, org_id, issuer_dn, serial, created_at) VALUES ('B2', 'ORG1', 'cn=Tidy CA, o=Example', '0b', '2025-01-01T00:00:00Z')",
        "INSERT INTO mapping_rules (id, org_id, san_kind, domain, created_at) VALUES ('R1', 'ORG1', 'upn', 'mil', '2025-01-01T00:00:00Z')",
        "INSERT INTO token_issuers (id, org_id, issuer, jwks, created_at, updated_at) VALUES ('I1', 'ORG1', 'https://idp', '{\"keys\":[]}', '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z')",
        "INSERT INTO identity_constraints (id, org_id, kind, value, created_at) VALUES ('C1', 'ORG1', 'allowed_issuer_dn', 'CN = Tidy CA , O = Example', '2025-01-01T00:00:00Z')",
        "UPDATE snapshot_state SET version = 7",
    ];
    older_schema(url, flavour, 1, &statements).await;
}

async fn a_first_schema_database_upgrades(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let flavour = if store == Store::Sqlite { "sqlite" } else { "postgres" };
    first_schema_only(&test_db.url, flavour).await;

    let db = Db::open(&DbOptions::new(test_db.url.clone())).await.expect("the upgrade runs");
    // The first migration ran from its released text; its checksum now is the reworded one's.
    let recorded: Vec<u8> = sqlx::query("SELECT checksum FROM _sqlx_migrations WHERE version = 1")
        .fetch_one(db.reader())
        .await
        .unwrap()
        .get(0);
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(flavour).join("0001_initial.sql");
    assert_eq!(recorded, sha2::Sha384::digest(std::fs::read(shipped).unwrap()).to_vec());
    // Every row is still there, owned by its org; the binding, made before certificates were
    // seen whole, rests on its org's word.
    let rows = snapshot_data::load(&db).await.unwrap();
    assert_eq!(rows.bindings.len(), 1);
    assert_eq!(rows.bindings[0].claim, Claim::Unverified);
    let dns: Vec<(String, String)> = sqlx::query("SELECT id, issuer_dn FROM blocklist ORDER BY id")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Parsed and canonical; a comma list is read as written (RFC 4514 order).
    assert_eq!(
        dns,
        vec![("B1".into(), "C=US,O=Example,CN=Old CA".into()), ("B2".into(), "CN=Tidy CA,O=Example".into())]
    );
    let constraint: String =
        sqlx::query("SELECT value FROM identity_constraints WHERE id = 'C1'").fetch_one(db.reader()).await.unwrap().get(0);
    assert_eq!(constraint, "CN=Tidy CA,O=Example");
    // The canonicalisation is a change the filter sees: a new version, in the log.
    assert!(rows.version > 7, "version {}", rows.version);
    let logged = certbind_control_plane::db::snapshot_log::read(&db, 7, rows.version).await.unwrap();
    assert_eq!(logged.len() as i64, rows.version - 7);
    // The SAN rule from before issuers were named is kept, but maps nothing.
    assert!(rows.rules.iter().all(|r| !matches!(r, Change::AddSanRule(_))));
    assert_eq!(rows.skipped, 1);
    let issuer: Option<String> =
        sqlx::query("SELECT issuer_dn FROM mapping_rules WHERE id = 'R1'").fetch_one(db.reader()).await.unwrap().get(0);
    assert_eq!(issuer, None);
    // Issuers are now per owner: another org may register the same URL.
    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ('ORG2', 'globex', '2025-01-01T00:00:00Z')")
        .execute(db.writer())
        .await
        .unwrap();
    sqlx::query("INSERT INTO token_issuers (id, org_id, issuer, jwks, created_at, updated_at) VALUES ('I2', 'ORG2', 'https://idp', '{}', 'x', 'x')")
        .execute(db.writer())
        .await
        .expect("a second owner of one issuer URL");
    // Running the migrations again changes nothing.
    let again = Db::open(&DbOptions::new(test_db.url.clone())).await.unwrap();
    assert_eq!(again.snapshot_version().await.unwrap(), rows.version);
    again.close().await;
    db.close().await;
    test_db.drop_database().await;
}

/// Bindings and mappings from before `0008`: verified where the certificate was seen whole
/// (its SAN domains kept in `certificate_sans`), unverified otherwise, and so in the snapshot.
async fn claims_from_before_verification_keep_what_was_seen(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let flavour = if store == Store::Sqlite { "sqlite" } else { "postgres" };
    let (seen, stated, mapped_seen, mapped_stated) = ("a".repeat(64), "b".repeat(64), "c".repeat(64), "d".repeat(64));
    let binding = |fp: &str| {
        format!(
            "INSERT INTO smart_card_links (fingerprint, user_id, org_id, subject_dn, issuer_dn, serial, not_before, not_after, \
             enabled, created_at) VALUES ('{fp}', 'USER1', 'ORG1', 'CN=a', 'CN=CA', '01', '2025-01-01T00:00:00Z', \
             '2030-01-01T00:00:00Z', 1, '2025-01-01T00:00:00Z')"
        )
    };
    let mapping = |fp: &str| {
        format!("INSERT INTO thumbprint_mappings (fingerprint, org_id, principal, created_at) VALUES ('{fp}', 'ORG1', 'svc', 'x')")
    };
    let sans = |fp: &str| {
        format!("INSERT INTO certificate_sans (fingerprint, san_kind, domain, issuer_dn) VALUES ('{fp}', 'email', 'example.mil', 'CN=CA')")
    };
    let statements = [
        "INSERT INTO orgs (id, name, created_at) VALUES ('ORG1', 'acme', '2025-01-01T00:00:00Z')".to_owned(),
        "INSERT INTO users (id, org_id, name, created_at) VALUES ('USER1', 'ORG1', 'alice', '2025-01-01T00:00:00Z')".to_owned(),
        binding(&seen),
        sans(&seen),
        binding(&stated),
        mapping(&mapped_seen),
        sans(&mapped_seen),
        mapping(&mapped_stated),
    ];
    older_schema(&test_db.url, flavour, 7, &statements.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let db = Db::open(&DbOptions::new(test_db.url.clone())).await.expect("the upgrade runs");
    let rows = snapshot_data::load(&db).await.unwrap();
    let bindings: Vec<(String, Claim)> = rows.bindings.iter().map(|b| (b.fingerprint.to_hex(), b.claim)).collect();
    assert_eq!(bindings, vec![(seen, Claim::Verified), (stated, Claim::Unverified)]);
    let mappings: Vec<(String, Claim)> = rows
        .rules
        .iter()
        .filter_map(|r| match r {
            Change::MapPrincipal(MappingRecord { fingerprint, claim, .. }) => Some((fingerprint.to_hex(), *claim)),
            _ => None,
        })
        .collect();
    assert_eq!(mappings, vec![(mapped_seen, Claim::Verified), (mapped_stated, Claim::Unverified)]);
    db.close().await;
    test_db.drop_database().await;
}

/// Bindings from before `0009`: their certificate was never kept, so their facts are unknown
/// (null), never guessed; orgs refuse Card Authentication until a super-admin allows it.
async fn bindings_from_before_certificates_were_kept_show_their_facts_as_unknown(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let flavour = if store == Store::Sqlite { "sqlite" } else { "postgres" };
    let fp = "e".repeat(64);
    let statements = [
        "INSERT INTO orgs (id, name, created_at) VALUES ('ORG1', 'acme', '2025-01-01T00:00:00Z')".to_owned(),
        "INSERT INTO users (id, org_id, name, created_at) VALUES ('USER1', 'ORG1', 'alice', '2025-01-01T00:00:00Z')".to_owned(),
        format!(
            "INSERT INTO smart_card_links (fingerprint, user_id, org_id, subject_dn, issuer_dn, serial, not_before, not_after, \
             enabled, created_at) VALUES ('{fp}', 'USER1', 'ORG1', 'CN=a', 'CN=CA', '01', '2025-01-01T00:00:00Z', \
             '2030-01-01T00:00:00Z', 1, '2025-01-01T00:00:00Z')"
        ),
    ];
    older_schema(&test_db.url, flavour, 8, &statements.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let db = Db::open(&DbOptions::new(test_db.url.clone())).await.expect("the upgrade runs");
    let link = certbind_control_plane::db::smartcards::get(&db, "ORG1", &certbind_shared::Fingerprint::parse(&fp).unwrap()).await.unwrap().expect("the binding");
    assert_eq!((link.user_id.as_str(), link.facts), ("USER1", None));
    let org = certbind_control_plane::db::orgs::get(&db, "ORG1").await.unwrap().expect("the org");
    assert!(!org.allow_card_authentication);
    db.close().await;
    test_db.drop_database().await;
}

/// Only the released text of a reworded migration is taken for the current one: a database
/// whose first migration ran from any other text is refused, as sqlx refuses it, and the
/// checksum it recorded is left as it was.
async fn a_migration_changed_otherwise_than_reworded_is_refused(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let flavour = if store == Store::Sqlite { "sqlite" } else { "postgres" };
    older_schema_with(&test_db.url, flavour, 1, &[], |name, text| {
        if name.starts_with("0001_") { text + "\n-- edited locally\n" } else { text }
    })
    .await;
    let refused = Db::open(&DbOptions::new(test_db.url.clone())).await.err().expect("an edited migration is refused");
    let error = format!("{refused:#}");
    assert!(error.contains("running database migrations") && error.contains('1'), "{error}");
}
