//! The snapshot store wired to the database and the API: [`StoreService`] implements
//! [`SnapshotService`].
//!
//! - Changes arrive through [`SnapshotService::committed`] with their version and are patched
//!   into the next snapshot without reading the tables.
//! - A version the service never hears of (another replica's change, the command line's, a
//!   hand-over a cancelled request never made) is read from the snapshot log: at once when
//!   PostgreSQL notifies its commit (`LISTEN` on `snapshot_log::CHANNEL`), and within a
//!   second ([`StoreSettings::check_every`]) otherwise, so a lost notification only delays.
//! - Changes another replica committed are signed by that replica: this one waits
//!   [`FOREIGN_GRACE`] for their stored bytes before signing them itself (the committer died
//!   before signing), so a change costs one signature, not one per replica.
//! - Every signature takes a new version from the database first (a claim), and signs the
//!   content committed before it: versions only go up, across restarts and replicas, and no
//!   version is signed twice.
//! - The signed bytes go into the database (`signed_snapshots`); the other services on it
//!   serve those very bytes for that version (checked under their own key first), each step
//!   between them entering their delta rings as it entered the signer's. So whichever replica
//!   a proxy reaches, one version is one byte string, a delta rebuilds exactly those bytes,
//!   and no replica serves a version below a stored one it has read. Another service's
//!   signature whose bytes are not stored yet changes nothing here: it is served once they are.
//! - Half-way through a snapshot's validity (by default) with nothing changed, a new version
//!   is claimed and signed, so an idle fleet never reaches expiry while the service runs.
//! - A full reload (start-up, a log the service cannot follow) reads the tables at one
//!   version, claims a newer one, and folds in what was committed between.

use super::builder::StreamedBindings;
use super::content::SnapshotContent;
use super::validate::{validate_change, BuildError};
use crate::domain::change::{BindingRecord, Change};
use super::served::{LeftOut, ServedSnapshot, SnapshotService};
use super::signed::SignedSnapshot;
use super::store::{SnapshotStore, StoreSettings};
use crate::db::snapshot_data::{self, BindingSink, IdentityRows};
use crate::db::snapshot_log::{self, LogEntry};
use crate::db::signed_snapshots;
use crate::db::Db;
use crate::signer::{public_key_json, Signer};
use certbind_shared::clock;
use anyhow::Context as _;
use axum::body::Bytes;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How long changes only other replicas committed wait for the committer's signed bytes
/// before this service signs them.
pub const FOREIGN_GRACE: Duration = Duration::from_secs(1);

/// Between two attempts at the listening connection.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Attempts at a reload whose catch-up the log cannot provide (pruned while the tables were
/// read): each reads newer tables, so more would only mean the log is far too short.
const RELOAD_ATTEMPTS: usize = 5;

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

/// Turns the database's rows into snapshot content, every rule with its owner. A row that
/// cannot be encoded (stored before validation ran in the write's transaction, or written
/// around the API) is quarantined: logged, counted in the second value, and left out, so one
/// bad row never stops the whole build.
pub fn content_from_rows(rows: &IdentityRows) -> (SnapshotContent, u64) {
    let mut content = SnapshotContent::default();
    let mut quarantined = 0u64;
    content.bindings.extend(rows.bindings.iter().cloned());
    let mut issuers = BTreeSet::new();
    for rule in &rows.rules {
        if let Err(e) = validate_change(rule) {
            quarantined += 1;
            tracing::error!(error = %e, rule = ?rule, "stored rule cannot be encoded; quarantined (left out of the snapshot)");
            continue;
        }
        match rule.clone() {
            Change::Block { owner: o, fingerprint } => content.blocklist.push((fingerprint, o)),
            Change::RevokeSerial(revoked) => content.revoked.push(revoked),
            Change::MapPrincipal(mapping) => content.principals.push(mapping),
            Change::AddSanRule(rule) => content.san_rules.push(rule),
            Change::AddConstraint(constraint) => content.constraints.push(constraint),
            // The first registration of an (issuer, owner) stands.
            Change::UpsertIssuer(issuer) if issuers.insert((issuer.issuer.clone(), issuer.owner.clone())) => {
                content.issuers.push(issuer)
            }
            Change::UpsertCa(ca) => content.cas.push(super::content::CaEntry {
                key: certbind_shared::identity::CaKey::of(&ca.key),
                value: super::content::CaValue {
                    subject_dn: ca.subject_dn,
                    require_fresh_crl: ca.require_fresh_crl,
                    fail_open: ca.fail_open,
                    crl_valid_until: ca.crl_valid_until,
                },
            }),
            _ => {}
        }
    }
    for (ca, serials) in &rows.crl_serials {
        let key = certbind_shared::identity::CaKey::of(ca);
        content.crl_revoked.reserve(serials.len());
        for serial in serials.iter() {
            content.crl_revoked.push(key.revocation_key(&certbind_shared::crl::Serial::from_der_content(serial).to_hex()));
        }
    }
    (content, quarantined)
}

/// A full build fed by the database: the bindings go straight into the snapshot's buffer as
/// they stream in, the rest (small) is kept as content.
#[derive(Default)]
struct StreamingBuild {
    streamed: Option<StreamedBindings>,
    rest: SnapshotContent,
    problem: Option<BuildError>,
    /// Rows left out because they cannot be encoded.
    quarantined: u64,
}

impl BindingSink for StreamingBuild {
    fn start(&mut self, bindings: usize, rest: &IdentityRows) {
        let (content, quarantined) = content_from_rows(rest);
        self.streamed = Some(StreamedBindings::new(bindings, &content));
        self.rest = content;
        self.quarantined = quarantined;
    }

    fn push(&mut self, row: BindingRecord) {
        let (Some(streamed), None) = (self.streamed.as_mut(), self.problem.as_ref()) else { return };
        match streamed.push(&row.fingerprint, &row.user_id, &row.org_id, row.enabled, row.claim) {
            Ok(()) => {}
            Err(e @ BuildError::BadString { .. }) => {
                self.quarantined += 1;
                tracing::error!(error = %e, fingerprint = %row.fingerprint.to_hex(), "stored binding cannot be encoded; quarantined");
            }
            Err(e) => self.problem = Some(e),
        }
    }
}

/// What the log says happened in `(after, upto]`: each version with the one it follows and
/// its changes, or `None` when the chain from `after` to `upto` has a hole (a version pruned
/// or unreadable).
async fn log_between(db: &Db, after: u64, upto: u64) -> anyhow::Result<Option<Vec<(u64, u64, Vec<Change>)>>> {
    if upto <= after {
        return Ok(Some(Vec::new()));
    }
    let entries = snapshot_log::read(db, to_i64(after), to_i64(upto)).await.context("reading the snapshot log")?;
    let mut out = Vec::with_capacity(entries.len());
    let mut last = after;
    for (version, previous, entry) in entries {
        let (Ok(version), Ok(previous)) = (u64::try_from(version), u64::try_from(previous)) else { return Ok(None) };
        if previous != last {
            return Ok(None);
        }
        last = version;
        match entry {
            LogEntry::Signature => out.push((version, previous, Vec::new())),
            LogEntry::Changes(changes) => out.push((version, previous, changes)),
            LogEntry::Unreadable => return Ok(None),
        }
    }
    Ok((last == upto).then_some(out))
}

/// A version claimed for a signature, and the one it follows.
#[derive(Debug, Clone, Copy)]
struct Claimed {
    version: u64,
    previous: u64,
}

/// Claims a version for a signature, at least `at_least`.
async fn claim(db: &Db, at_least: i64) -> anyhow::Result<Claimed> {
    let claim = snapshot_log::claim(db, at_least).await.context("cannot claim a snapshot version")?;
    Ok(Claimed {
        version: u64::try_from(claim.version).context("snapshot version out of range")?,
        previous: u64::try_from(claim.previous).context("snapshot version out of range")?,
    })
}

/// What a full load claims at least: the Unix time in milliseconds. Versions otherwise count
/// changes and signatures, far fewer than a thousand a second, so a database restored from an
/// older backup (or a fresh one) still signs above every version signed before.
fn load_floor() -> i64 {
    certbind_shared::clock::now_millis()
}

/// Reads everything and publishes it as one snapshot under a newly claimed version,
/// streaming the bindings into it.
async fn reload(db: &Db, store: &Arc<SnapshotStore>) -> anyhow::Result<Arc<SignedSnapshot>> {
    for _ in 0..RELOAD_ATTEMPTS {
        store.begin_load();
        let mut build = StreamingBuild::default();
        let rows = snapshot_data::load_streaming(db, &mut build).await;
        let rows = rows.inspect_err(|_| store.abort_load()).context("cannot read the identity data")?;
        let loaded_at = u64::try_from(rows.version).unwrap_or(0);
        let streamed = match (build.streamed, build.problem) {
            (Some(streamed), None) => streamed,
            (_, Some(problem)) => {
                store.abort_load();
                return Err(problem).context("cannot build a snapshot of the identity data");
            }
            (None, None) => {
                store.abort_load();
                anyhow::bail!("the identity data was read without its bindings");
            }
        };
        let claimed = claim(db, load_floor()).await.inspect_err(|_| store.abort_load())?;
        let sign_as = claimed.version;
        let Some(since) = log_between(db, loaded_at, claimed.previous).await.inspect_err(|_| store.abort_load())? else {
            // The log lost what was committed meanwhile: read the tables again.
            store.abort_load();
            continue;
        };
        let catch_up: Vec<Change> = since.into_iter().flat_map(|(_, _, changes)| changes).collect();
        let rest = build.rest;
        store.set_quarantined_rows(build.quarantined);
        let store = Arc::clone(store);
        return tokio::task::spawn_blocking(move || store.finish_streamed_load(streamed, rest, loaded_at, sign_as, catch_up))
            .await
            .context("the snapshot build task failed")?
            .context("cannot publish the reloaded snapshot");
    }
    anyhow::bail!("the identity data kept changing while it was read; retrying")
}

/// Builds and signs a snapshot of the database as it is now (`certbind snapshot export`),
/// under a version of its own.
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
    /// The log could not be followed: only a reload of the tables catches up.
    reload_needed: AtomicBool,
    served: Arc<RwLock<Option<Arc<ServedSnapshot>>>>,
    versions: Arc<watch::Sender<u64>>,
    /// The newest stored version refused (it does not verify under this service's key), so a
    /// rotation in progress is logged once, not every tick.
    refused: AtomicU64,
    /// A change was committed through this service since its last claim: sign without waiting.
    own_changes: AtomicBool,
    /// Since when unsigned changes, all other replicas', have waited for their bytes.
    foreign_since: Mutex<Option<Instant>>,
    /// Notifications received from PostgreSQL.
    notifications: AtomicU64,
    /// Dropped with the service: the listening task ends.
    _listening: watch::Sender<()>,
}

impl StoreService {
    /// Loads and signs the first snapshot, then keeps it current in the background.
    pub async fn start(db: Db, signer: Arc<dyn Signer>, settings: StoreSettings) -> anyhow::Result<Arc<Self>> {
        let store = Arc::new(SnapshotStore::new(signer, settings));
        let first = reload(&db, &store).await?;
        keep_signed(&db, &first).await;
        let served_now = Arc::new(RwLock::new(Some(served(&first))));
        let versions = Arc::new(watch::Sender::new(first.version()));
        let (listening, stopped) = watch::channel(());
        let service = Arc::new(StoreService {
            store: Arc::clone(&store),
            db,
            wake: Notify::new(),
            reload_needed: AtomicBool::new(false),
            served: Arc::clone(&served_now),
            versions: Arc::clone(&versions),
            refused: AtomicU64::new(0),
            own_changes: AtomicBool::new(false),
            foreign_since: Mutex::new(None),
            notifications: AtomicU64::new(0),
            _listening: listening,
        });
        tokio::spawn(forward_published(store.subscribe(), served_now, versions));
        if let Some(url) = service.db.listen_url().cloned() {
            tokio::spawn(listen(Arc::downgrade(&service), url, stopped));
        }
        tokio::spawn(run(Arc::downgrade(&service)));
        Ok(service)
    }

    /// Notifications of other replicas' commits received from PostgreSQL so far.
    pub fn notifications(&self) -> u64 {
        self.notifications.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &Arc<SnapshotStore> {
        &self.store
    }

    async fn tick(&self) {
        if let Err(e) = self.step().await {
            tracing::error!(error = %format!("{e:#}"), "snapshot service: retrying");
        }
    }

    async fn step(&self) -> anyhow::Result<()> {
        if !self.reload_needed.load(Ordering::SeqCst) {
            // Read first: a version applied since could be newer than the database read.
            let applied = self.store.applied_version();
            let database = self.db.snapshot_version().await.context("reading the snapshot version")?;
            let database = u64::try_from(database).unwrap_or(0);
            if database < applied {
                // The database went back (restored from a backup under the running service):
                // a load claims past every version signed before.
                tracing::warn!(database, applied, "the database version went back; reloading");
                self.reload_needed.store(true, Ordering::SeqCst);
            } else {
                self.adopt_stored().await?;
                if !self.follow_log(database).await? {
                    self.reload_needed.store(true, Ordering::SeqCst);
                }
            }
        }
        if self.reload_needed.swap(false, Ordering::SeqCst) {
            self.store.release_hold();
            let loaded = reload(&self.db, &self.store).await.inspect_err(|_| {
                self.reload_needed.store(true, Ordering::SeqCst);
            })?;
            keep_signed(&self.db, &loaded).await;
            return Ok(());
        }
        if !self.sign_now() {
            return Ok(());
        }
        // Every signature under a version of its own, with the content committed before it.
        let claimed = claim(&self.db, 0).await?;
        if !self.follow_log(claimed.previous).await? {
            self.reload_needed.store(true, Ordering::SeqCst);
            return Ok(());
        }
        self.store.hold(claimed.previous, claimed.version);
        if self.store.ready_to_sign() != Some(claimed.version) {
            self.store.release_hold();
            self.reload_needed.store(true, Ordering::SeqCst);
            return Ok(());
        }
        let store = Arc::clone(&self.store);
        let published = tokio::task::spawn_blocking(move || store.publish()).await.context("the signing task failed")?;
        match published {
            Ok(Some(snapshot)) => keep_signed(&self.db, &snapshot).await,
            Ok(None) => {}
            // The claim stays held: the next attempt signs it.
            Err(e) => return Err(e).context("snapshot publication failed"),
        }
        Ok(())
    }

    /// Serves, in order, the snapshots other services stored above the one published here.
    async fn adopt_stored(&self) -> anyhow::Result<()> {
        let published = self.store.latest().map_or(0, |s| s.version());
        let stored = signed_snapshots::versions_after(&self.db, to_i64(published)).await.context("reading the stored snapshots")?;
        for version in stored {
            let Some(bytes) = signed_snapshots::bytes(&self.db, version).await.context("reading a stored snapshot")? else {
                continue; // pruned since: the next is newer
            };
            let store = Arc::clone(&self.store);
            match tokio::task::spawn_blocking(move || store.adopt(bytes)).await.context("the adopting task failed")? {
                Ok(_) => {}
                Err(e) => {
                    let version = u64::try_from(version).unwrap_or(0);
                    if self.refused.swap(version, Ordering::Relaxed) != version {
                        tracing::warn!(version, error = %e, "a stored snapshot does not verify under this service's key (a key rotation under way?); signing its own versions meanwhile");
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Whether to claim and sign now: a re-signature is due, or changes wait, committed
    /// through this service or waiting past [`FOREIGN_GRACE`] for their committer's bytes.
    fn sign_now(&self) -> bool {
        let resign = self.resign_due();
        let mut foreign_since = self.foreign_since.lock().unwrap_or_else(|p| p.into_inner());
        if !self.store.has_unpublished() && !resign {
            *foreign_since = None;
            return false;
        }
        if !resign
            && !self.own_changes.swap(false, Ordering::SeqCst)
            && foreign_since.get_or_insert_with(Instant::now).elapsed() < FOREIGN_GRACE
        {
            return false;
        }
        *foreign_since = None;
        true
    }

    /// Folds every version up to `upto` the store has not seen, from the log. False when the
    /// log cannot be followed there (a reload is due).
    async fn follow_log(&self, upto: u64) -> anyhow::Result<bool> {
        let applied = self.store.applied_version();
        if upto <= applied {
            return Ok(true);
        }
        let Some(entries) = log_between(&self.db, applied, upto).await? else { return Ok(false) };
        for (version, previous, changes) in entries {
            self.store.apply_after(previous, version, changes);
        }
        Ok(self.store.applied_version() >= upto)
    }

    /// The latest snapshot is past the re-sign point of its validity.
    fn resign_due(&self) -> bool {
        let Some(latest) = self.store.latest() else { return false };
        let after = i64::try_from(self.store.settings().resign_after().as_secs()).unwrap_or(i64::MAX);
        clock::now_seconds() >= latest.issued_at().saturating_add(after)
    }
}

fn to_i64(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// Stores what this service signed, for the others on the database to serve. A failure only
/// costs them a signature of their own (under a newer version) the next time they change.
async fn keep_signed(db: &Db, snapshot: &SignedSnapshot) {
    if let Err(e) = signed_snapshots::store(db, to_i64(snapshot.version()), snapshot.bytes()).await {
        tracing::warn!(version = snapshot.version(), error = %e, "cannot store the signed snapshot for the other replicas");
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
    loop {
        {
            let Some(service) = service.upgrade() else { return };
            let check_every = service.store.settings().check_every;
            tokio::select! {
                () = service.wake.notified() => {}
                () = tokio::time::sleep(check_every) => {}
            }
        }
        let Some(service) = service.upgrade() else { return };
        service.tick().await;
    }
}

/// Wakes the service on every commit another replica announces (`snapshot_log::notify`),
/// and once more each time the listening connection is made again: what was announced while
/// it was down is lost, and the database is reachable again only then. Ends when the service
/// is dropped.
async fn listen(service: Weak<StoreService>, url: crate::db::ListenUrl, mut stopped: watch::Receiver<()>) {
    use sqlx::postgres::PgListener;
    loop {
        let connected = async {
            let mut listener = PgListener::connect(url.as_str()).await?;
            listener.listen(snapshot_log::CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = stopped.changed() => return,
            connected = connected => match connected {
                Ok(listener) => {
                    let Some(service) = service.upgrade() else { return };
                    service.wake.notify_one();
                    listener
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other replicas' commits; checking every tick meanwhile");
                    tokio::select! {
                        _ = stopped.changed() => return,
                        () = tokio::time::sleep(LISTEN_RETRY) => continue,
                    }
                }
            },
        };
        loop {
            let received = tokio::select! {
                _ = stopped.changed() => return,
                received = listener.try_recv() => received,
            };
            let Some(service) = service.upgrade() else { return };
            match received {
                Ok(Some(_)) => {
                    service.notifications.fetch_add(1, Ordering::Relaxed);
                    service.wake.notify_one();
                }
                // The connection was lost: connect again here (not inside the listener, whose
                // reconnection would go unnoticed) and look once it is back.
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the listening connection failed; connecting again");
                    break;
                }
            }
        }
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

    fn committed(&self, version: i64, changes: Vec<Change>) {
        let Ok(version) = u64::try_from(version) else { return };
        if !changes.is_empty() {
            self.own_changes.store(true, Ordering::SeqCst);
        }
        self.store.apply(version, changes);
        self.wake.notify_one();
    }

    fn served_elsewhere(&self, _version: u64) {
        self.wake.notify_one();
    }

    fn delta(&self, from: u64, latest: &ServedSnapshot) -> Option<Bytes> {
        self.store.delta(from, latest.version, latest.bytes.len()).map(Bytes::from)
    }

    fn left_out(&self) -> LeftOut {
        LeftOut { rejected_changes: self.store.rejected_changes(), quarantined_rows: self.store.quarantined_rows() }
    }
}

