//! The latest signed snapshot, and the changes on their way into the next one.
//!
//! The store holds one signed snapshot and a small ordered map of changes since
//! ([`Pending`]). Publishing merges the two in one pass over the old bytes, signs, checks the
//! result with the same verifier the filters run, and announces it on a `watch` channel.
//!
//! Versions are the database's: every change the filter sees is committed together with an
//! increment of the snapshot version, and handed to [`SnapshotStore::apply`] with that
//! version. Changes are folded in version order, whatever order they arrive in; a version
//! that never arrives leaves a gap the caller closes from the snapshot log or with a full
//! reload ([`SnapshotStore::begin_load`] / [`SnapshotStore::finish_load`]). A published
//! snapshot of version `v` therefore holds exactly the database's content at `v`.
//!
//! Every signature takes a version of its own from the database (a claim): the caller folds
//! everything before it, then [`SnapshotStore::hold`]s the claim, which stops folding there
//! until [`SnapshotStore::publish`] has signed it. So a version is signed once, by the one
//! service that claimed it, with exactly the content committed before it.

use super::deltas::{DeltaLimits, DeltaRing};
use super::builder::{encode_content, encode_patched, PatchMode, Pending, StreamedBindings};
use super::content::SnapshotContent;
use super::error::StoreError;
use super::signed::{self, SignedSnapshot};
use super::validate::BuildError;
use crate::domain::change::Change;
use crate::signer::Signer;
use certbind_shared::clock;
use certbind_shared::snapshot::delta;
use certbind_shared::snapshot::{SnapshotHeader, SnapshotView};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Default lifetime of a snapshot. A proxy keeps serving its last snapshot this long while
/// the control plane is unreachable, then fails closed; a day rides out an outage overnight.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `expires_at - issued_at` of every snapshot.
    pub validity: Duration,
    /// How long after its issue a snapshot is signed again under a new version when nothing
    /// changed, so that an idle fleet never holds one near expiry; `None`: half the validity.
    pub resign_after: Option<Duration>,
    /// The delta ring's bounds.
    pub deltas: DeltaLimits,
    /// How often the service looks at the database when nothing wakes it (a notification
    /// from PostgreSQL, a change of its own): the bound on how late a lost notification is.
    pub check_every: Duration,
}

impl StoreSettings {
    pub fn with_validity(validity: Duration) -> Self {
        StoreSettings { validity, resign_after: None, deltas: DeltaLimits::default(), check_every: Duration::from_secs(1) }
    }

    /// When a snapshot is signed again: `resign_after`, or half the validity.
    pub fn resign_after(&self) -> Duration {
        self.resign_after.unwrap_or(self.validity / 2).min(self.validity)
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings::with_validity(DEFAULT_VALIDITY)
    }
}

/// What [`SnapshotStore::apply`] did with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Folded into the next snapshot.
    Now,
    /// Waiting for an earlier version, or for a load in progress.
    Buffered,
    /// Not newer than what the store already holds (a load included it).
    AlreadyIncluded,
}

struct State {
    /// The last snapshot signed, which pending changes patch.
    base: Option<SnapshotView>,
    /// The database version that `base` plus `pending` reflect.
    applied: u64,
    pending: Pending,
    /// `applied` moved past the base's version: publishing would sign something new.
    dirty: bool,
    /// A full load is running: every change waits in `buffered` until it ends.
    loading: bool,
    /// Changes that arrived ahead of their predecessor, by version: the version each follows,
    /// the changes, and when they arrived.
    buffered: BTreeMap<u64, (u64, Vec<Change>, Instant)>,
    rejected_changes: u64,
    /// Rows the last full build left out because they cannot be encoded.
    quarantined_rows: u64,
    /// Binding and principal changes published since the string table was last rebuilt, and
    /// publications since: both bound the garbage a continued string table carries.
    churn_since_compaction: usize,
    publications_since_compaction: usize,
    /// A signature claimed at this version: nothing after it folds until it is published.
    hold: Option<u64>,
}

/// Publications between rebuilds of the string table, whatever the churn: the small
/// sections' strings are re-appended by every publication.
const MAX_PUBLICATIONS_BETWEEN_COMPACTIONS: usize = 64;

/// Whether the next publication should rebuild the string table: when the changes since the
/// last rebuild could have left more garbage than an eighth of the bindings' strings.
fn compaction_due(state: &State, base: &SnapshotView, pending: &Pending) -> bool {
    let churn = state.churn_since_compaction + pending.churn();
    churn > 1_000 + base.binding_count() / 8
        || state.publications_since_compaction >= MAX_PUBLICATIONS_BETWEEN_COMPACTIONS
}

/// See the module documentation.
pub struct SnapshotStore {
    signer: RwLock<Arc<dyn Signer>>,
    settings: StoreSettings,
    state: Mutex<State>,
    /// Held while signing, so two publications never race to replace the base.
    publishing: Mutex<()>,
    latest: watch::Sender<Option<Arc<SignedSnapshot>>>,
    /// The step to each published version from the one before.
    deltas: Mutex<DeltaRing>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // State is updated in single assignments: a panic elsewhere cannot leave it half-written.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SnapshotStore {
    pub fn new(signer: Arc<dyn Signer>, settings: StoreSettings) -> Self {
        let settings_deltas = settings.deltas;
        SnapshotStore {
            signer: RwLock::new(signer),
            settings,
            state: Mutex::new(State {
                base: None,
                applied: 0,
                pending: Pending::default(),
                dirty: false,
                loading: false,
                buffered: BTreeMap::new(),
                rejected_changes: 0,
                quarantined_rows: 0,
                churn_since_compaction: 0,
                publications_since_compaction: 0,
                hold: None,
            }),
            publishing: Mutex::new(()),
            latest: watch::Sender::new(None),
            deltas: Mutex::new(DeltaRing::new(settings_deltas)),
        }
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    pub fn signer(&self) -> Arc<dyn Signer> {
        Arc::clone(&self.signer.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Signs future snapshots with `signer` (key rotation without a restart). Filters must
    /// pin the new key before this; the next version is the first signed by it.
    pub fn rotate_signer(&self, signer: Arc<dyn Signer>) {
        *self.signer.write().unwrap_or_else(|p| p.into_inner()) = signer;
    }

    /// Makes `snapshot` the latest: records the step to it from the snapshot it replaces
    /// (before anyone can ask for it), then announces it.
    fn announce(&self, snapshot: &Arc<SignedSnapshot>) {
        if let Some(previous) = self.latest().filter(|p| p.version() < snapshot.version()) {
            let step = delta::between(previous.view(), snapshot.view());
            lock(&self.deltas).push(step);
        }
        self.latest.send_replace(Some(Arc::clone(snapshot)));
    }

    /// The delta chain from `from` to `to`, encoded, when the ring holds it and it is worth
    /// serving beside the full snapshot of `full_len` bytes.
    pub fn delta(&self, from: u64, to: u64, full_len: usize) -> Option<Vec<u8>> {
        lock(&self.deltas).chain(from, to, full_len)
    }

    /// Steps the delta ring holds, and their bytes.
    pub fn delta_ring_size(&self) -> (usize, usize) {
        lock(&self.deltas).size()
    }

    /// The latest signed snapshot.
    pub fn latest(&self) -> Option<Arc<SignedSnapshot>> {
        self.latest.borrow().clone()
    }

    /// Sees every newly published snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<SignedSnapshot>>> {
        self.latest.subscribe()
    }

    /// Waits up to `timeout` for a snapshot newer than `after` (any snapshot for `None`);
    /// returns the latest snapshot either way (`None` only if none was ever published).
    pub async fn wait_newer_than(&self, after: Option<u64>, timeout: Duration) -> Option<Arc<SignedSnapshot>> {
        let mut receiver = self.latest.subscribe();
        let newer = |s: &Option<Arc<SignedSnapshot>>| s.as_ref().is_some_and(|s| after.is_none_or(|a| s.version() > a));
        let _ = tokio::time::timeout(timeout, receiver.wait_for(newer)).await;
        self.latest()
    }

    /// The database version the store has folded in (published or pending).
    pub fn applied_version(&self) -> u64 {
        lock(&self.state).applied
    }

    /// Whether applied changes wait to be signed.
    pub fn has_unpublished(&self) -> bool {
        let state = lock(&self.state);
        state.dirty && !state.loading
    }

    /// Since when the oldest change has been waiting for a version that has not arrived.
    /// A caller that sees this for more than a moment should reload (the missing change was
    /// committed but never handed over).
    pub fn waiting_since(&self) -> Option<Instant> {
        let state = lock(&self.state);
        if state.loading {
            return None;
        }
        state.buffered.values().map(|(_, _, at)| *at).min()
    }

    /// Changes left out of the snapshot: refused by validation (see
    /// [`super::builder::validate_change`]) or by the encoder when published.
    pub fn rejected_changes(&self) -> u64 {
        lock(&self.state).rejected_changes
    }

    /// Rows the last full build left out (see [`SnapshotStore::set_quarantined_rows`]).
    pub fn quarantined_rows(&self) -> u64 {
        lock(&self.state).quarantined_rows
    }

    /// A full build left `rows` database rows out because they cannot be encoded: the rest is
    /// still distributed, and this gauge (on `/metrics`) says something needs fixing.
    pub fn set_quarantined_rows(&self, rows: u64) {
        lock(&self.state).quarantined_rows = rows;
    }

    /// Splits `pending`, which the encoder refuses as a whole on `base`, into the changes that
    /// encode (returned) and those that cannot, which are logged, counted in
    /// `rejected_changes` and dropped: one bad change never holds back the others, nor the
    /// claim being signed. Bisects, so a few bad changes among many cost a few encodings.
    fn sift(&self, base: &SnapshotView, pending: Pending, header: &SnapshotHeader) -> Pending {
        fn sift_into(
            base: &SnapshotView,
            header: &SnapshotHeader,
            accepted: &mut Pending,
            mut entries: Vec<Pending>,
            dropped: &mut u64,
        ) {
            if entries.is_empty() {
                return;
            }
            let mut trial = accepted.clone();
            for entry in &entries {
                trial.merge(entry.clone());
            }
            let error = match encode_patched(base, &trial, header, PatchMode::Compact) {
                Ok(_) => {
                    *accepted = trial;
                    return;
                }
                Err(e) => e,
            };
            if entries.len() == 1 {
                *dropped += 1;
                tracing::error!(error = %error, change = ?entries.first(), "change cannot be encoded; left out of the snapshot");
                return;
            }
            let right = entries.split_off(entries.len() / 2);
            sift_into(base, header, accepted, entries, dropped);
            sift_into(base, header, accepted, right, dropped);
        }
        let mut accepted = Pending::default();
        let mut dropped = 0;
        sift_into(base, header, &mut accepted, pending.into_entries(), &mut dropped);
        let mut state = lock(&self.state);
        state.rejected_changes = state.rejected_changes.saturating_add(dropped);
        accepted
    }

    /// Hands over the changes committed at database version `version`. Cheap: no signing.
    pub fn apply(&self, version: u64, changes: Vec<Change>) -> Applied {
        self.apply_after(version.saturating_sub(1), version, changes)
    }

    /// [`SnapshotStore::apply`] of a version that follows `previous` (a claim that skipped
    /// versions follows the last one committed before it).
    pub fn apply_after(&self, previous: u64, version: u64, changes: Vec<Change>) -> Applied {
        let mut state = lock(&self.state);
        if version <= state.applied && state.base.is_some() {
            return Applied::AlreadyIncluded;
        }
        if state.base.is_none()
            || state.loading
            || previous != state.applied
            || state.hold.is_some_and(|hold| state.applied >= hold)
        {
            state.buffered.insert(version, (previous, changes, Instant::now()));
            return Applied::Buffered;
        }
        Self::fold(&mut state, version, changes);
        Self::drain_buffered(&mut state);
        Applied::Now
    }

    /// `version` is a signature this service claimed, following `previous`: it changes
    /// nothing, and nothing after it folds until [`SnapshotStore::publish`] signs it.
    pub fn hold(&self, previous: u64, version: u64) {
        lock(&self.state).hold = Some(version);
        self.apply_after(previous, version, Vec::new());
        let mut state = lock(&self.state);
        if state.applied == version {
            // Signing a claim is the point of it, even with nothing changed (a re-signature).
            state.dirty = true;
        }
    }

    /// The claimed version, once everything before it has been folded: what `publish` signs.
    pub fn ready_to_sign(&self) -> Option<u64> {
        let state = lock(&self.state);
        state.hold.filter(|hold| *hold == state.applied && !state.loading && state.base.is_some())
    }

    /// Gives up a claim that cannot be signed (a reload replaces it); changes flow again.
    pub fn release_hold(&self) {
        let mut state = lock(&self.state);
        state.hold = None;
        if state.base.is_some() && !state.loading {
            Self::drain_buffered(&mut state);
        }
    }

    fn fold(state: &mut State, version: u64, changes: Vec<Change>) {
        let changes_empty = changes.is_empty();
        for change in changes {
            if let Err(e) = state.pending.apply(change) {
                state.rejected_changes = state.rejected_changes.saturating_add(1);
                tracing::error!(version, error = %e, "change left out of the snapshot");
            }
        }
        state.applied = version;
        // Another service's signature changes nothing: its bytes are served
        // ([`SnapshotStore::adopt`]), or, until they are, the content signed before it.
        state.dirty |= !changes_empty;
    }

    /// Folds buffered changes that now follow on; drops those a load already covers.
    fn drain_buffered(state: &mut State) {
        let applied = state.applied;
        state.buffered.retain(|version, _| *version > applied);
        while let Some(entry) = state.buffered.first_entry() {
            let (previous, _, _) = entry.get();
            if *previous != state.applied || state.hold.is_some_and(|hold| state.applied >= hold) {
                break;
            }
            let (version, (_, changes, _)) = entry.remove_entry();
            Self::fold(state, version, changes);
        }
    }

    /// Serves `bytes`, signed by another service under a version it claimed, as the latest
    /// snapshot: what later changes patch, and the step to it from the snapshot it replaces
    /// goes into the delta ring, as it would had this service signed it. Everything applied
    /// past it is dropped: the caller reads it from the log again. Blocking (verification
    /// hashes the bytes): call it from a blocking task.
    ///
    /// Not adopted (`Ok(false)`): a version not newer than the one published, or than a claim
    /// of this service's own, or while a load runs. Refused: bytes that do not verify under
    /// this service's key (another key during a rotation, or bytes damaged in the database).
    pub fn adopt(&self, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let view = signed::own_verifier(&*self.signer())?.verify(bytes, clock::now_seconds(), None).map_err(StoreError::SelfCheck)?;
        let version = view.version();
        let _publishing = lock(&self.publishing);
        if self.latest().is_some_and(|latest| latest.version() >= version) {
            return Ok(false);
        }
        {
            let mut state = lock(&self.state);
            if state.loading || state.base.is_none() || state.hold.is_some_and(|hold| hold >= version) {
                return Ok(false);
            }
            // A claim below it is never signed: the version is skipped, as a failed claim is.
            state.hold = None;
            state.base = Some(view.clone());
            state.applied = version;
            state.pending = Pending::default();
            state.dirty = false;
            state.churn_since_compaction = 0;
            state.publications_since_compaction = 0;
            Self::drain_buffered(&mut state);
        }
        self.announce(&Arc::new(SignedSnapshot::new(view)));
        Ok(true)
    }

    /// Marks the start of a full reload. Call it *before* reading the database: changes that
    /// arrive from now on wait, and the reload's version will cover every change applied so
    /// far. Then [`SnapshotStore::finish_load`] or [`SnapshotStore::abort_load`].
    pub fn begin_load(&self) {
        lock(&self.state).loading = true;
    }

    /// A reload that failed before [`SnapshotStore::finish_load`]: changes flow again.
    pub fn abort_load(&self) {
        let mut state = lock(&self.state);
        state.loading = false;
        if state.base.is_some() {
            Self::drain_buffered(&mut state);
        }
    }

    /// Builds, signs and publishes `content`, read from the database at `version`, replacing
    /// everything the store held. Blocking (hashing and the token): call it from a blocking
    /// task.
    pub fn finish_load(&self, mut content: SnapshotContent, version: u64) -> Result<Arc<SignedSnapshot>, StoreError> {
        self.finish_load_with(version, |header| encode_content(&mut content, header))
    }

    /// [`SnapshotStore::finish_load`] of a build already under way: bindings streamed from
    /// the database into `streamed`, everything else in `rest`, read at version `loaded_at`;
    /// signed as `sign_as` (a version claimed after the read) with `catch_up` (the changes
    /// committed between the two) folded in.
    pub fn finish_streamed_load(
        &self,
        streamed: StreamedBindings,
        mut rest: SnapshotContent,
        loaded_at: u64,
        sign_as: u64,
        catch_up: Vec<Change>,
    ) -> Result<Arc<SignedSnapshot>, StoreError> {
        if catch_up.is_empty() {
            return self.finish_load_with(sign_as, |header| streamed.finish(&mut rest, header));
        }
        // The content as read, opened without a signature, is the base the changes patch.
        let provisional = SnapshotHeader { version: loaded_at, ..self.header(sign_as) };
        let base = streamed
            .finish(&mut rest, &provisional)
            .and_then(|unsigned| unsigned.attach_signature(&[0u8; 64]).map_err(BuildError::Encode))
            .map_err(StoreError::Build)
            .and_then(|bytes| SnapshotView::open_unauthenticated(bytes).map_err(StoreError::SelfCheck));
        let base = match base {
            Ok(base) => base,
            Err(e) => {
                self.abort_load();
                return Err(e);
            }
        };
        let mut pending = Pending::default();
        for change in catch_up {
            if let Err(e) = pending.apply(change) {
                lock(&self.state).rejected_changes += 1;
                tracing::error!(error = %e, "change left out of the snapshot");
            }
        }
        let trial_header = self.header(sign_as);
        if encode_patched(&base, &pending, &trial_header, PatchMode::Compact).is_err() {
            pending = self.sift(&base, pending, &trial_header);
        }
        self.finish_load_with(sign_as, |header| encode_patched(&base, &pending, header, PatchMode::Compact))
    }

    fn finish_load_with(
        &self,
        version: u64,
        encode: impl FnOnce(&SnapshotHeader) -> Result<certbind_shared::snapshot::UnsignedSnapshot, BuildError>,
    ) -> Result<Arc<SignedSnapshot>, StoreError> {
        let _publishing = lock(&self.publishing);
        let published = self.latest().map(|s| s.version());
        let result = match published {
            Some(published) if version <= published => Err(StoreError::StaleLoad { loaded: version, published }),
            _ => self.sign(version, encode),
        };
        let mut state = lock(&self.state);
        state.loading = false;
        match result {
            Ok(snapshot) => {
                state.base = Some(snapshot.view().clone());
                state.applied = version;
                state.pending = Pending::default();
                state.dirty = false;
                state.churn_since_compaction = 0;
                state.publications_since_compaction = 0;
                state.hold = None;
                Self::drain_buffered(&mut state);
                drop(state);
                let snapshot = Arc::new(snapshot);
                self.announce(&snapshot);
                Ok(snapshot)
            }
            Err(e) => {
                if state.base.is_some() {
                    Self::drain_buffered(&mut state);
                }
                Err(e)
            }
        }
    }

    /// [`SnapshotStore::begin_load`] and [`SnapshotStore::finish_load`] in one, for callers
    /// that apply no changes concurrently (start-up, `snapshot export`, tests).
    pub fn load(&self, content: SnapshotContent, version: u64) -> Result<Arc<SignedSnapshot>, StoreError> {
        self.begin_load();
        self.finish_load(content, version)
    }

    /// Signs the applied changes into a new snapshot, if there are any. Blocking: call it
    /// from a blocking task. On failure the changes stay pending for the next attempt.
    pub fn publish(&self) -> Result<Option<Arc<SignedSnapshot>>, StoreError> {
        let _publishing = lock(&self.publishing);
        let (base, mut pending, version, mut mode) = {
            let mut state = lock(&self.state);
            if !state.dirty || state.loading || state.hold.is_some_and(|hold| hold != state.applied) {
                return Ok(None);
            }
            let base = state.base.clone().ok_or(StoreError::NotLoaded)?;
            state.dirty = false;
            let pending = std::mem::take(&mut state.pending);
            let mode =
                if compaction_due(&state, &base, &pending) { PatchMode::Compact } else { PatchMode::KeepStrings };
            (base, pending, state.applied, mode)
        };
        let mut result = self.sign(version, |header| encode_patched(&base, &pending, header, mode));
        if mode == PatchMode::KeepStrings && matches!(result, Err(StoreError::SelfCheck(_) | StoreError::Build(_))) {
            // The copying path produced something the reader refuses: rebuild every record.
            tracing::error!("snapshot patch failed its self-check; rebuilding the string table");
            result = self.sign(version, |header| encode_patched(&base, &pending, header, PatchMode::Compact));
        }
        if let Err(StoreError::Build(e)) = &result {
            // Kept, these changes would fail every later publication too, and hold the claim
            // (and every org's revocations behind it) forever.
            tracing::error!(error = %e, version, "the changes cannot be encoded together; leaving out those that cannot");
            pending = self.sift(&base, pending, &self.header(version));
            mode = PatchMode::Compact;
            result = self.sign(version, |header| encode_patched(&base, &pending, header, PatchMode::Compact));
        }
        match result {
            Ok(snapshot) => {
                {
                    let mut state = lock(&self.state);
                    state.base = Some(snapshot.view().clone());
                    if state.hold == Some(version) {
                        state.hold = None;
                        Self::drain_buffered(&mut state);
                    }
                    if mode == PatchMode::Compact {
                        state.churn_since_compaction = 0;
                        state.publications_since_compaction = 0;
                    } else {
                        state.churn_since_compaction += pending.churn();
                        state.publications_since_compaction += 1;
                    }
                }
                let snapshot = Arc::new(snapshot);
                self.announce(&snapshot);
                Ok(Some(snapshot))
            }
            Err(e) => {
                let mut state = lock(&self.state);
                let newer = std::mem::take(&mut state.pending);
                state.pending = pending;
                state.pending.restore_older(newer);
                state.dirty = true;
                Err(e)
            }
        }
    }

    /// A header for `version`, issued now, signed by the current key.
    fn header(&self, version: u64) -> SnapshotHeader {
        signed::header(&*self.signer(), self.settings.validity, version)
    }

    /// Encodes with a fresh header, signs, and verifies the result as a filter would.
    fn sign(
        &self,
        version: u64,
        encode: impl FnOnce(&SnapshotHeader) -> Result<certbind_shared::snapshot::UnsignedSnapshot, BuildError>,
    ) -> Result<SignedSnapshot, StoreError> {
        // One read of the signer: the header names the key that signs.
        let signer = self.signer();
        signed::sign(&*signer, signed::header(&*signer, self.settings.validity, version), encode)
    }
}
