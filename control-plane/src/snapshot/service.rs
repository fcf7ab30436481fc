//! The snapshot store wired to the database and the API: [`StoreService`] implements
//! [`SnapshotService`].
//!
//! - Binding changes arrive through [`SnapshotService::committed`] with their version and are
//!   patched into the next snapshot without reading the database.
//! - So are additions to the blocklist (by fingerprint or by issuer and serial), the urgent
//!   direction.
//! - Other changes (blocklist removals, issuers, mapping rules, constraints, thumbprints) and any
//!   version that goes missing (a handler cancelled between commit and hand-over, the CLI or
//!   another replica writing the same database) lead to a full reload.
//! - Before a snapshot's first quarter of validity is over, a fresh version is committed and
//!   signed, so a proxy never holds a snapshot near expiry while the control plane is up.

use super::builder::{
    BindingEntry, BuildError, Change, ConstraintEntry, IssuerEntry, PrincipalEntry, RevokedSerial, SnapshotContent,
    StreamedBindings,
};
use super::store::{SignedSnapshot, SnapshotStore, StoreError, StoreSettings};
use crate::app::{IdentityChange, ServedSnapshot, SnapshotService};
use crate::db::snapshot_data::{self, BindingRow, BindingSink, IdentityRows};
use crate::db::blocklist::BlockTarget;
use crate::db::{commit_change, Actor, AuditRecord, Db, Visibility};
use crate::signer::{public_key_json, Signer};
use anyhow::Context as _;
use axum::body::Bytes;
use certbind_shared::identity::SanKind;
use certbind_shared::snapshot::ConstraintKind;
use certbind_shared::Fingerprint;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How often the worker looks at the database version when nothing wakes it.
const TICK: Duration = Duration::from_secs(1);

/// How long a missing version may stay missing before a full reload: long enough for a
/// change committed a moment ago to be handed over, short enough that a lost hand-over
/// costs seconds, not a revocation that never arrives.
const GAP_GRACE: Duration = Duration::from_secs(2);

/// Snapshot bytes shared with the HTTP body, without a copy.
struct SnapshotBody(Arc<Vec<u8>>);

impl AsRef<[u8]> for SnapshotBody {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

fn served(snapshot: &SignedSnapshot) -> Arc<ServedSnapshot> {
    Arc::new(ServedSnapshot {
        version: snapshot.version(),
        bytes: Bytes::from_owner(SnapshotBody(snapshot.shared_bytes())),
    })
}

/// A fingerprint column of `table`; a value that is not canonical hex is logged and the row
/// left out (it fails closed: an unreadable binding is an unenrolled card).
fn stored_fingerprint(text: &str, table: &str) -> Option<Fingerprint> {
    match Fingerprint::from_canonical_hex(text) {
        Ok(fp) => Some(fp),
        Err(_) => {
            tracing::error!(table, "row with a non-canonical fingerprint left out of the snapshot");
            None
        }
    }
}

/// Turns the database's rows into snapshot content. Rows that cannot be represented are
/// left out and logged; each omission fails closed (an unreadable binding is an unenrolled
/// card, an unreadable issuer's tokens are refused).
pub fn content_from_rows(rows: IdentityRows) -> (SnapshotContent, u64) {
    let version = u64::try_from(rows.version).unwrap_or(0);
    let fingerprint = stored_fingerprint;
    let mut content = SnapshotContent::default();
    for row in rows.bindings {
        if let Some(fingerprint) = fingerprint(&row.fingerprint, "smart_card_links") {
            content.bindings.push(BindingEntry {
                fingerprint,
                user_id: row.user_id,
                org_id: row.org_id,
                enabled: row.enabled,
            });
        }
    }
    content.blocklist = rows.blocked_fingerprints.iter().filter_map(|fp| fingerprint(fp, "blocklist")).collect();
    content.revoked =
        rows.revoked_serials.into_iter().map(|(issuer_dn, serial)| RevokedSerial { issuer_dn, serial }).collect();
    for (fp, principal) in rows.thumbprint_mappings {
        if let Some(fingerprint) = fingerprint(&fp, "thumbprint_mappings") {
            content.principals.push(PrincipalEntry { fingerprint, principal });
        }
    }
    for (kind, domain) in rows.san_rules {
        match kind.as_str() {
            "email" => content.san_rules.push((SanKind::Email, domain)),
            "upn" => content.san_rules.push((SanKind::Upn, domain)),
            other => tracing::error!(kind = other, "mapping rule of unknown SAN kind left out of the snapshot"),
        }
    }
    for row in rows.constraints {
        match ConstraintKind::from_name(&row.kind) {
            Some(kind) => content.constraints.push(ConstraintEntry { org_id: row.org_id, kind, value: row.value }),
            None => tracing::error!(kind = row.kind, "constraint of unknown kind left out of the snapshot"),
        }
    }
    for row in rows.issuers {
        match certbind_shared::pop::jwks::Jwks::parse(row.jwks.as_bytes()) {
            Ok(_) => content.issuers.push(IssuerEntry { issuer: row.issuer, jwks_json: row.jwks.into_bytes() }),
            Err(e) => {
                tracing::error!(issuer = row.issuer, error = %e, "issuer with unusable JWKS left out of the snapshot")
            }
        }
    }
    (content, version)
}

/// A full build fed by the database: the bindings go straight into the snapshot's buffer as
/// they stream in, the rest (small) is kept as content.
#[derive(Default)]
struct StreamingBuild {
    streamed: Option<StreamedBindings>,
    rest: SnapshotContent,
    problem: Option<BuildError>,
}

impl BindingSink for StreamingBuild {
    fn start(&mut self, bindings: usize, rest: &IdentityRows) {
        let (content, _) = content_from_rows(rest.clone());
        self.streamed = Some(StreamedBindings::new(bindings, &content));
        self.rest = content;
    }

    fn push(&mut self, row: BindingRow) {
        let (Some(streamed), None) = (self.streamed.as_mut(), self.problem.as_ref()) else { return };
        let Some(fingerprint) = stored_fingerprint(&row.fingerprint, "smart_card_links") else { return };
        if let Err(e) = streamed.push(&fingerprint, &row.user_id, &row.org_id, row.enabled) {
            self.problem = Some(e);
        }
    }
}

/// Reads everything and publishes it as one snapshot, streaming the bindings into it.
async fn reload(db: &Db, store: &Arc<SnapshotStore>) -> anyhow::Result<Arc<SignedSnapshot>> {
    store.begin_load();
    let mut build = StreamingBuild::default();
    let rows = read_or_abort(store, snapshot_data::load_streaming(db, &mut build).await)?;
    let version = u64::try_from(rows.version).unwrap_or(0);
    let streamed = match (build.streamed, build.problem) {
        (Some(streamed), None) => streamed,
        (_, Some(BuildError::BindingsOutOfOrder { fingerprint })) => {
            // A database that does not sort as promised: collect and sort instead.
            tracing::warn!(fingerprint, "bindings did not arrive in fingerprint order; rebuilding from a sorted copy");
            return reload_collected(db, store).await;
        }
        (_, Some(problem)) => {
            store.abort_load();
            return Err(problem).context("cannot build a snapshot of the identity data");
        }
        (None, None) => return reload_collected(db, store).await,
    };
    let rest = build.rest;
    finish_blocking(store, move |store| store.finish_streamed_load(streamed, rest, version)).await
}

/// [`reload`] from rows collected and sorted in memory.
async fn reload_collected(db: &Db, store: &Arc<SnapshotStore>) -> anyhow::Result<Arc<SignedSnapshot>> {
    let rows = read_or_abort(store, snapshot_data::load(db).await)?;
    let (content, version) = content_from_rows(rows);
    finish_blocking(store, move |store| store.finish_load(content, version)).await
}

/// The rows of a load, or the load called off so that changes flow again.
fn read_or_abort<T>(store: &SnapshotStore, read: sqlx::Result<T>) -> anyhow::Result<T> {
    read.inspect_err(|_| store.abort_load()).context("cannot read the identity data")
}

/// A load's build and signature, off the async workers (hashing and the token block).
async fn finish_blocking(
    store: &Arc<SnapshotStore>,
    finish: impl FnOnce(&SnapshotStore) -> Result<Arc<SignedSnapshot>, StoreError> + Send + 'static,
) -> anyhow::Result<Arc<SignedSnapshot>> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || finish(&store))
        .await
        .context("the snapshot build task failed")?
        .context("cannot publish the reloaded snapshot")
}

/// Builds and signs a snapshot of the database as it is now (`certbind snapshot export`).
pub async fn build_from_database(
    db: &Db,
    signer: Arc<dyn Signer>,
    settings: StoreSettings,
) -> anyhow::Result<Arc<SignedSnapshot>> {
    let store = Arc::new(SnapshotStore::new(signer, settings));
    reload(db, &store).await
}

/// See the module documentation.
pub struct StoreService {
    store: Arc<SnapshotStore>,
    db: Db,
    wake: Notify,
    /// A change was committed whose content only the database knows.
    reload_needed: AtomicBool,
    served: Arc<RwLock<Option<Arc<ServedSnapshot>>>>,
    versions: Arc<watch::Sender<u64>>,
}

impl StoreService {
    /// Loads and signs the first snapshot, then keeps it current in the background.
    pub async fn start(db: Db, signer: Arc<dyn Signer>, settings: StoreSettings) -> anyhow::Result<Arc<Self>> {
        let store = Arc::new(SnapshotStore::new(signer, settings));
        let first = reload(&db, &store).await?;
        let served_now = Arc::new(RwLock::new(Some(served(&first))));
        let versions = Arc::new(watch::Sender::new(first.version()));
        let service = Arc::new(StoreService {
            store: Arc::clone(&store),
            db,
            wake: Notify::new(),
            reload_needed: AtomicBool::new(false),
            served: Arc::clone(&served_now),
            versions: Arc::clone(&versions),
        });
        tokio::spawn(forward_published(store.subscribe(), served_now, versions));
        tokio::spawn(run(Arc::downgrade(&service)));
        Ok(service)
    }

    pub fn store(&self) -> &Arc<SnapshotStore> {
        &self.store
    }

    async fn tick(&self, behind_since: &mut Option<Instant>) {
        let applied = self.store.applied_version();
        let database = self.db.snapshot_version().await.ok().and_then(|v| u64::try_from(v).ok());
        if database.is_some_and(|v| v > applied) {
            behind_since.get_or_insert_with(Instant::now);
        } else {
            *behind_since = None;
        }
        let overdue = |since: Option<Instant>| since.is_some_and(|s| s.elapsed() >= GAP_GRACE);
        if self.reload_needed.swap(false, Ordering::SeqCst)
            || overdue(*behind_since)
            || overdue(self.store.waiting_since())
        {
            *behind_since = None;
            if let Err(e) = reload(&self.db, &self.store).await {
                self.reload_needed.store(true, Ordering::SeqCst);
                tracing::error!(error = %format!("{e:#}"), "snapshot reload failed; retrying");
            }
            return;
        }
        if self.refresh_due() {
            if let Err(e) = self.commit_refresh().await {
                tracing::error!(error = %format!("{e:#}"), "cannot commit a snapshot refresh");
            }
        }
        if self.store.has_unpublished() {
            let store = Arc::clone(&self.store);
            match tokio::task::spawn_blocking(move || store.publish()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "snapshot publication failed; retrying"),
                Err(e) => tracing::error!(error = %e, "snapshot publication task failed"),
            }
        }
    }

    /// A quarter of the validity has passed since the latest snapshot was issued.
    fn refresh_due(&self) -> bool {
        let Some(latest) = self.store.latest() else { return false };
        let quarter = i64::try_from(self.store.settings().validity.as_secs() / 4).unwrap_or(i64::MAX);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        now >= latest.issued_at().saturating_add(quarter) && !self.store.has_unpublished()
    }

    /// Commits a new version with no content change, so the next snapshot is newer than the
    /// one proxies hold and pushes their expiry out.
    async fn commit_refresh(&self) -> anyhow::Result<()> {
        let tx = self.db.begin().await.context("cannot begin a transaction")?;
        let actor = Actor { org_id: String::new(), name: "snapshot-refresh".into() };
        let record = AuditRecord {
            actor: &actor,
            action: "snapshot.refresh",
            target: String::new(),
            detail: serde_json::json!({ "reason": "re-sign before expiry" }),
        };
        let version = commit_change(tx, record, Visibility::Snapshot).await.context("cannot commit")?;
        if let Some(version) = version.and_then(|v| u64::try_from(v).ok()) {
            self.store.apply(version, Vec::new());
        }
        Ok(())
    }
}

/// Keeps the API's view (served bytes, version watch) in step with the store.
async fn forward_published(
    mut published: watch::Receiver<Option<Arc<SignedSnapshot>>>,
    served_now: Arc<RwLock<Option<Arc<ServedSnapshot>>>>,
    versions: Arc<watch::Sender<u64>>,
) {
    while published.changed().await.is_ok() {
        let latest = published.borrow_and_update().clone();
        if let Some(snapshot) = latest {
            *served_now.write().unwrap_or_else(|p| p.into_inner()) = Some(served(&snapshot));
            versions.send_replace(snapshot.version());
        }
    }
}

async fn run(service: Weak<StoreService>) {
    let mut behind_since = None;
    loop {
        {
            let Some(service) = service.upgrade() else { return };
            tokio::select! {
                () = service.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
        let Some(service) = service.upgrade() else { return };
        service.tick(&mut behind_since).await;
    }
}

impl SnapshotService for StoreService {
    fn latest(&self) -> Option<Arc<ServedSnapshot>> {
        self.served.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.versions.subscribe()
    }

    fn public_keys(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [public_key_json(self.store.signer().as_ref())] })
    }

    fn committed(&self, version: i64, change: IdentityChange) {
        let Ok(version) = u64::try_from(version) else { return };
        let fingerprint = |text: &str| Fingerprint::from_canonical_hex(text).ok();
        let change = match change {
            IdentityChange::BindingUpserted(row) => fingerprint(&row.fingerprint).map(|fingerprint| {
                Change::UpsertBinding { fingerprint, user_id: row.user_id, org_id: row.org_id, enabled: row.enabled }
            }),
            IdentityChange::BindingRemoved { fingerprint: text } => {
                fingerprint(&text).map(|fingerprint| Change::RemoveBinding { fingerprint })
            }
            IdentityChange::Blocked(BlockTarget::Fingerprint(text)) => {
                fingerprint(&text).map(|fingerprint| Change::Block { fingerprint })
            }
            IdentityChange::Blocked(BlockTarget::Serial { issuer_dn, serial }) => {
                Some(Change::RevokeSerial { issuer_dn, serial })
            }
            IdentityChange::Other => None,
        };
        match change {
            Some(change) => {
                self.store.apply(version, vec![change]);
            }
            // Only the database knows this version's content: leave the gap, reload at once.
            None => self.reload_needed.store(true, Ordering::SeqCst),
        }
        self.wake.notify_one();
    }
}
