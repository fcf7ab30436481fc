//! A snapshot source that is the only one of its process (the dynamic module's), natively
//! over a double of the host: it holds a large snapshot once, publishing nothing to shared
//! data, and keeps it in force through a refused successor.

use certbind_filter::config::{self, IdentitySource};
use certbind_filter::host::HostError;
use certbind_filter::snapshot::{BodyBytes, FetchResponse, Level, LocalSharedData, RootHost, SnapshotMetrics, SnapshotSource, RELEASE_FIRST_BYTES};
use certbind_tests::cases::fixtures::NOW;
use certbind_tests::snapshots::{signed_snapshot, SnapshotContent, Stamp, TestSnapshotKey};
use serde_json::json;
use std::cell::{Cell, RefCell};

const SNAPSHOT_TYPE: &str = "application/vnd.certbind.snapshot";

/// The host: a fixed clock, one process's shared data (counting the bytes written to it), and
/// the fetches asked for.
#[derive(Default)]
struct Host {
    shared: LocalSharedData,
    written: Cell<usize>,
    fetches: RefCell<Vec<u32>>,
}

impl RootHost for Host {
    fn now_ms(&self) -> i64 {
        NOW * 1000
    }
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(self.shared.get(key))
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError> {
        self.written.set(self.written.get() + value.len());
        Ok(self.shared.set(key, value, cas))
    }
    fn dispatch(&self, _upstream: &str, _headers: &[(&str, &str)], _timeout_ms: u64) -> Result<u32, HostError> {
        let mut fetches = self.fetches.borrow_mut();
        let token = u32::try_from(fetches.len() + 1).unwrap();
        fetches.push(token);
        Ok(token)
    }
    fn log(&self, _level: Level, _message: &str) {}
    fn random_u64(&self) -> u64 {
        7
    }
    fn increment(&self, _metric: Option<u32>) {}
    fn record(&self, _metric: Option<u32>, _value: u64) {}
}

fn source(key: &TestSnapshotKey) -> SnapshotSource {
    let document = json!({
        "policy": {"certificate_source": {"kind": "xfcc", "trust": "this_proxy"}, "default_mode": "mtls"},
        "snapshot": {
            "pinned_keys": [key.pinned_pem()],
            "control_plane": {"cluster": "cp", "authority": "cp", "credential": "c", "long_poll_seconds": 30}
        }
    });
    let IdentitySource::Snapshot(settings) = config::parse(document.to_string().as_bytes()).unwrap().identity else {
        panic!("a snapshot configuration");
    };
    SnapshotSource::new(settings, SnapshotMetrics::default(), 1)
}

/// Ticks until the source asks for a fetch, and answers it with `snapshot`.
fn deliver(source: &mut SnapshotSource, host: &Host, snapshot: &[u8]) {
    source.on_tick(host);
    let token = *host.fetches.borrow().last().expect("a fetch");
    let body = BodyBytes(snapshot.to_vec());
    source.on_response(host, token, FetchResponse::Answer { status: 200, content_type: Some(SNAPSHOT_TYPE.into()), body: &body });
}

fn large(key: &TestSnapshotKey, version: u64) -> Vec<u8> {
    let bytes = signed_snapshot(key, &SnapshotContent::synthetic(30_000), Stamp { version, issued_at: NOW - 60, expires_at: NOW + 86_400 });
    assert!(bytes.len() >= RELEASE_FIRST_BYTES, "large enough that a shared source lets go of the held one");
    bytes
}

#[test]
fn a_source_alone_holds_its_snapshot_once_and_keeps_it_through_a_refused_one() {
    let key = TestSnapshotKey::new("alone");
    let first = large(&key, 1);
    let mut forged = large(&key, 2);
    let middle = forged.len() / 2;
    forged[middle] ^= 1;

    // Shared with other workers, a source publishes the snapshot it verified to shared data.
    let (host, mut shared) = (Host::default(), source(&key));
    deliver(&mut shared, &host, &first);
    assert_eq!(shared.held_version(), Some(1));
    assert!(host.written.get() >= first.len());

    // Alone, it writes no more than its lease there, and a refused successor leaves the one
    // it holds in force (it was never let go, as there is nothing to read it back from).
    let (host, mut alone) = (Host::default(), source(&key).alone());
    deliver(&mut alone, &host, &first);
    assert_eq!(alone.held_version(), Some(1));
    assert!(host.written.get() < 1024, "{} bytes written to shared data", host.written.get());
    deliver(&mut alone, &host, &forged);
    assert_eq!(host.fetches.borrow().len(), 2);
    assert_eq!(alone.held_version(), Some(1));
    assert!(alone.current(NOW).is_some());
    assert!(host.written.get() < 1024);
}
