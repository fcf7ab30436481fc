//! The filter keeping its identity snapshot current, through the compiled `.wasm`: several VMs
//! of one proxy share host data, one of them fetches from a control plane this test plays, and
//! every one of them decides with what was verified.

use certbind_tests::cases::fixtures::{TestCert, NOW};
use certbind_tests::host::{FilterHost, HttpRequest, HttpResult, PendingHttpCall, SharedData};
use certbind_tests::snapshots::{delta_between, signed_snapshot, SnapshotContent, Stamp, TestSnapshotKey};
use serde_json::json;
use std::time::Duration;

const DAY: i64 = 86_400;
const CLUSTER: &str = "certbind_control_plane";
const SNAPSHOT_TYPE: &str = "application/vnd.certbind.snapshot";

fn card() -> TestCert {
    TestCert::load("piv-auth")
}

fn other_card() -> TestCert {
    TestCert::load("cac")
}

fn config(keys: &[&TestSnapshotKey]) -> String {
    let pinned: Vec<String> = keys.iter().map(|k| k.pinned_pem()).collect();
    json!({
        "policy": {"certificate_source": {"kind": "xfcc", "trust": "this_proxy"}, "default_mode": "mtls"},
        "snapshot": {
            "pinned_keys": pinned,
            "control_plane": {"cluster": CLUSTER, "authority": "127.0.0.1:8080", "credential": "proxy-secret", "long_poll_seconds": 30}
        }
    })
    .to_string()
}

fn stamp(version: u64) -> Stamp {
    Stamp { version, issued_at: NOW - 60, expires_at: NOW + DAY }
}

fn bound() -> SnapshotContent {
    SnapshotContent::default().bind(card().fingerprint, "01JBUSER00000000000000000A", "org-a")
}

/// A worker: one VM of the proxy, configured, its clock at `NOW`.
fn worker(shared: &SharedData, seed: u64, config: &str) -> FilterHost {
    let mut host = FilterHost::with_shared_data(std::path::Path::new(certbind_tests::FILTER_WASM), shared.clone())
        .expect("the filter loads");
    host.set_random_seed(seed);
    host.set_time_nanos(nanos(NOW));
    assert!(host.configure(config.as_bytes()).expect("configure runs"), "refused: {:?}", host.take_logs());
    host
}

fn nanos(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap() * 1_000_000_000
}

fn request_with(host: &mut FilterHost, cert: &TestCert) -> HttpResult {
    let request = HttpRequest::get("/mtls/x")
        .header("x-forwarded-client-cert", &cert.xfcc())
        .property_str("connection.sha256_peer_certificate_digest", &cert.hex());
    host.request(&request).expect("the request runs")
}

fn status(result: &HttpResult) -> u32 {
    result.status().unwrap_or(200)
}

/// Ticks `host` and returns the callout it dispatched, if any.
fn tick(host: &mut FilterHost) -> Vec<PendingHttpCall> {
    host.tick().expect("tick runs");
    host.take_http_calls()
}

fn one_call(host: &mut FilterHost) -> PendingHttpCall {
    let calls = tick(host);
    assert_eq!(calls.len(), 1, "expected one fetch, got {calls:?}");
    calls.into_iter().next().unwrap()
}

fn header<'a>(call: &'a PendingHttpCall, name: &str) -> Option<&'a str> {
    call.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn answer(host: &mut FilterHost, call: &PendingHttpCall, snapshot: &[u8]) {
    host.respond_http_call(call.token, &[(":status", "200"), ("content-type", SNAPSHOT_TYPE)], snapshot)
        .expect("the response is delivered");
}

fn metric(host: &FilterHost, name: &str) -> i64 {
    host.metric(&format!("certbind.snapshot.{name}")).unwrap_or(0)
}

/// A worker that has fetched and verified version 7 (the card bound).
fn loaded(key: &TestSnapshotKey) -> FilterHost {
    let mut host = worker(&SharedData::new(), 1, &config(&[key]));
    let call = one_call(&mut host);
    answer(&mut host, &call, &signed_snapshot(key, &bound(), stamp(7)));
    host
}

#[test]
fn no_snapshot_refuses_with_503_then_the_first_fetch_serves() {
    let key = TestSnapshotKey::new("a");
    let mut host = worker(&SharedData::new(), 1, &config(&[&key]));
    let refused = request_with(&mut host, &card());
    assert_eq!(status(&refused), 503);
    assert!(refused.local_response.unwrap().body_text().contains("identity_unavailable"));
    let logs = host.take_logs();
    assert!(logs.iter().any(|(_, line)| line.contains("no snapshot has verified yet")), "{logs:?}");

    let call = one_call(&mut host);
    assert_eq!(call.upstream, CLUSTER);
    assert_eq!(header(&call, ":path"), Some("/api/v1/snapshot?wait=0"));
    assert_eq!(header(&call, "authorization"), Some("Bearer proxy-secret"));
    assert_eq!(header(&call, ":authority"), Some("127.0.0.1:8080"));
    assert_eq!(header(&call, "if-none-match"), None);
    answer(&mut host, &call, &signed_snapshot(&key, &bound(), stamp(7)));

    let allowed = request_with(&mut host, &card());
    assert_eq!(status(&allowed), 200);
    assert_eq!(allowed.header("x-dm-user-id"), Some("01JBUSER00000000000000000A"));
    assert_eq!(allowed.header("x-dm-org-id"), Some("org-a"));
    assert_eq!(metric(&host, "version"), 7);
    assert_eq!(metric(&host, "full_loads"), 1);
    // The long-poll for the next change went out as soon as the first answer arrived.
    assert_eq!(metric(&host, "fetches"), 2);
}

#[test]
fn the_long_poll_names_the_held_version_and_a_304_keeps_it() {
    let key = TestSnapshotKey::new("a");
    let mut host = loaded(&key);
    // After a new snapshot the next poll goes out at once.
    let call = one_call(&mut host);
    assert_eq!(header(&call, ":path"), Some("/api/v1/snapshot?after_version=7&wait=30"));
    assert_eq!(header(&call, "if-none-match"), Some("\"7\""));
    assert_eq!(call.timeout_ms, 40_000);
    // The control plane held the poll for its whole wait, then found nothing newer.
    host.advance_time(Duration::from_secs(30));
    host.respond_http_call(call.token, &[(":status", "304")], b"").unwrap();
    assert_eq!(metric(&host, "not_modified"), 1);
    assert_eq!(status(&request_with(&mut host, &card())), 200);
    // The next poll goes out at once: an idle fleet holds one open request per proxy.
    let again = one_call(&mut host);
    assert_eq!(header(&again, "if-none-match"), Some("\"7\""));
    // A control plane that answers "nothing newer" at once is polled once a second, not hammered.
    host.respond_http_call(again.token, &[(":status", "304")], b"").unwrap();
    assert!(tick(&mut host).is_empty());
    host.advance_time(Duration::from_secs(1));
    assert_eq!(tick(&mut host).len(), 1);
}

#[test]
fn a_newer_snapshot_replaces_the_held_one() {
    let key = TestSnapshotKey::new("a");
    let mut host = loaded(&key);
    host.advance_time(Duration::from_secs(1));
    let call = one_call(&mut host);
    let revoked = bound().block(card().fingerprint);
    answer(&mut host, &call, &signed_snapshot(&key, &revoked, stamp(8)));
    let refused = request_with(&mut host, &card());
    assert_eq!(status(&refused), 401);
    assert!(refused.local_response.unwrap().body_text().contains("certificate_blocklisted"));
    assert_eq!(metric(&host, "version"), 8);
}

/// Every refusal keeps the snapshot in force, counts its kind, and logs why.
#[test]
fn bad_snapshots_are_refused_and_the_last_good_one_stays() {
    let key = TestSnapshotKey::new("a");
    let stranger = TestSnapshotKey::new("stranger");
    let good8 = signed_snapshot(&key, &bound(), stamp(8));
    let mut flipped = good8.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let mut renamed_key = good8.clone();
    // The key id lives at bytes 40..56 of the header: name a key that is not pinned.
    renamed_key[40..56].copy_from_slice(b"0123456789abcdef");
    let expired = signed_snapshot(&key, &bound(), Stamp { version: 9, issued_at: NOW - 2 * DAY, expires_at: NOW - DAY });
    let future = signed_snapshot(&key, &bound(), Stamp { version: 9, issued_at: NOW + DAY, expires_at: NOW + 2 * DAY });
    let same_version_other_content = signed_snapshot(&key, &SnapshotContent::default(), stamp(7));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("rollback", signed_snapshot(&key, &SnapshotContent::default(), stamp(6)), "rollback"),
        ("replay with other content", same_version_other_content, "replay"),
        ("flipped byte", flipped, "bad_signature"),
        ("signed by another key", signed_snapshot(&stranger, &SnapshotContent::default(), stamp(9)), "unknown_key"),
        ("unknown key id", renamed_key, "unknown_key"),
        ("expired", expired, "expired"),
        ("issued in the future", future, "issued_in_future"),
        ("not a snapshot", b"{\"keys\":[]}".to_vec(), "malformed"),
    ];
    for (name, bytes, kind) in cases {
        let mut host = loaded(&key);
        host.advance_time(Duration::from_secs(1));
        let call = one_call(&mut host);
        host.take_logs();
        answer(&mut host, &call, &bytes);
        assert_eq!(metric(&host, &format!("refused.{kind}")), 1, "{name}");
        assert_eq!(metric(&host, "version"), 7, "{name}");
        let logs = host.take_logs();
        assert!(logs.iter().any(|(_, l)| l.contains("snapshot refused") && l.contains(kind)), "{name}: {logs:?}");
        let still = request_with(&mut host, &card());
        assert_eq!(status(&still), 200, "{name}");
        assert_eq!(still.header("x-dm-user-id"), Some("01JBUSER00000000000000000A"), "{name}");
    }
}

#[test]
fn the_same_snapshot_again_is_not_a_refusal() {
    let key = TestSnapshotKey::new("a");
    let mut host = loaded(&key);
    host.advance_time(Duration::from_secs(1));
    let call = one_call(&mut host);
    answer(&mut host, &call, &signed_snapshot(&key, &bound(), stamp(7)));
    assert_eq!(metric(&host, "refused.replay"), 0);
    assert_eq!(metric(&host, "not_modified"), 1);
}

#[test]
fn expiry_refuses_with_503_until_a_newer_snapshot_arrives() {
    let key = TestSnapshotKey::new("a");
    let mut host = loaded(&key);
    host.advance_time(Duration::from_secs(1));
    let call = one_call(&mut host);
    host.fail_http_call(call.token).unwrap();
    // The control plane stays away past the snapshot's expiry.
    host.advance_time(Duration::from_secs(u64::try_from(DAY).unwrap()));
    let call = one_call(&mut host);
    let logs = host.take_logs();
    assert!(logs.iter().any(|(_, l)| l.contains("expired")), "{logs:?}");
    let refused = request_with(&mut host, &card());
    assert_eq!(status(&refused), 503);
    let logs = host.take_logs();
    assert!(logs.iter().any(|(_, l)| l.contains("expired at")), "{logs:?}");
    // It comes back.
    let later = Stamp { version: 8, issued_at: NOW + DAY, expires_at: NOW + 2 * DAY };
    answer(&mut host, &call, &signed_snapshot(&key, &bound(), later));
    assert_eq!(status(&request_with(&mut host, &card())), 200);
}

#[test]
fn a_second_pinned_key_takes_over_signing() {
    let old = TestSnapshotKey::new("old");
    let new = TestSnapshotKey::new("new");
    let mut host = worker(&SharedData::new(), 1, &config(&[&old, &new]));
    let call = one_call(&mut host);
    answer(&mut host, &call, &signed_snapshot(&old, &bound(), stamp(7)));
    assert_eq!(metric(&host, "version"), 7);
    host.advance_time(Duration::from_secs(1));
    let call = one_call(&mut host);
    answer(&mut host, &call, &signed_snapshot(&new, &bound().block(card().fingerprint), stamp(8)));
    assert_eq!(metric(&host, "version"), 8);
    assert_eq!(status(&request_with(&mut host, &card())), 401);
}

#[test]
fn an_unreachable_control_plane_backs_off_and_the_last_good_snapshot_serves() {
    let key = TestSnapshotKey::new("a");
    let mut host = loaded(&key);
    let mut gaps = Vec::new();
    for _ in 0..5 {
        host.advance_time(Duration::from_millis(200));
        let call = loop {
            if let Some(call) = tick(&mut host).pop() {
                break call;
            }
            host.advance_time(Duration::from_millis(200));
        };
        gaps.push(call_time(&host));
        host.fail_http_call(call.token).unwrap();
        assert_eq!(status(&request_with(&mut host, &card())), 200);
    }
    assert_eq!(metric(&host, "fetch_failures"), 5);
    // Each wait is at least half of 1 s, 2 s, 4 s, 8 s: the fleet does not hammer a sick server.
    let waits: Vec<u64> = gaps.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, wait) in waits.iter().enumerate() {
        let floor = 1_000u64 << (i + 1) >> 1;
        assert!(*wait >= floor, "wait {i} was {wait} ms, below {floor} ms: {waits:?}");
    }
    // One warning for the run of failures, not one per failure.
    let warnings = host.take_logs().into_iter().filter(|(_, l)| l.contains("retrying with backoff")).count();
    assert_eq!(warnings, 1);
}

fn call_time(host: &FilterHost) -> u64 {
    host.time_nanos() / 1_000_000
}

#[test]
fn a_refused_credential_says_so() {
    let key = TestSnapshotKey::new("a");
    let mut host = worker(&SharedData::new(), 1, &config(&[&key]));
    let call = one_call(&mut host);
    host.take_logs();
    host.respond_http_call(call.token, &[(":status", "401")], b"{}").unwrap();
    let logs = host.take_logs();
    assert!(logs.iter().any(|(_, l)| l.contains("refused the proxy credential")), "{logs:?}");
    assert_eq!(metric(&host, "fetch_failures"), 1);
}

#[test]
fn an_unexpected_content_type_is_refused() {
    let key = TestSnapshotKey::new("a");
    let mut host = worker(&SharedData::new(), 1, &config(&[&key]));
    let call = one_call(&mut host);
    let snapshot = signed_snapshot(&key, &bound(), stamp(7));
    host.respond_http_call(call.token, &[(":status", "200"), ("content-type", "text/html")], &snapshot).unwrap();
    assert_eq!(metric(&host, "refused.unexpected_content_type"), 1);
    assert_eq!(status(&request_with(&mut host, &card())), 503);
}

/// Four workers of one proxy: one fetch, one verification, every worker enforcing it.
#[test]
fn one_fetch_serves_every_worker() {
    let key = TestSnapshotKey::new("a");
    let shared = SharedData::new();
    let config = config(&[&key]);
    let mut workers: Vec<FilterHost> = (1..=4).map(|seed| worker(&shared, seed, &config)).collect();
    let mut calls: Vec<(usize, PendingHttpCall)> = Vec::new();
    for (i, w) in workers.iter_mut().enumerate() {
        calls.extend(tick(w).into_iter().map(|c| (i, c)));
    }
    assert_eq!(calls.len(), 1, "exactly one worker fetches: {calls:?}");
    let (fetcher, call) = calls.pop().unwrap();
    answer(&mut workers[fetcher], &call, &signed_snapshot(&key, &bound(), stamp(7)));
    for w in workers.iter_mut() {
        w.advance_time(Duration::from_millis(200));
        let extra = tick(w);
        assert!(extra.iter().all(|c| header(c, ":path").unwrap().contains("after_version=7")), "{extra:?}");
    }
    for (i, w) in workers.iter_mut().enumerate() {
        let result = request_with(w, &card());
        assert_eq!(status(&result), 200, "worker {i}");
        assert_eq!(result.header("x-dm-user-id"), Some("01JBUSER00000000000000000A"), "worker {i}");
        assert_eq!(metric(w, "version"), 7, "worker {i}");
        let expected_adoptions = i64::from(i != fetcher);
        assert_eq!(metric(w, "adopted_from_shared"), expected_adoptions, "worker {i}");
        assert_eq!(metric(w, "full_loads"), i64::from(i == fetcher), "worker {i}");
    }
    // Later ticks read only the small head: nobody copies the snapshot again.
    for _ in 0..10 {
        for w in workers.iter_mut() {
            w.advance_time(Duration::from_millis(200));
            w.tick().unwrap();
        }
    }
    for w in &workers {
        assert!(metric(w, "adopted_from_shared") <= 1);
    }
}

/// The fetching worker goes away; another takes the lease over once it lapses.
#[test]
fn another_worker_takes_over_when_the_fetcher_stops() {
    let key = TestSnapshotKey::new("a");
    let shared = SharedData::new();
    let config = config(&[&key]);
    let mut first = worker(&shared, 1, &config);
    let mut second = worker(&shared, 2, &config);
    let call = one_call(&mut first);
    assert!(tick(&mut second).is_empty());
    answer(&mut first, &call, &signed_snapshot(&key, &bound(), stamp(7)));
    drop(first);
    second.advance_time(Duration::from_secs(2));
    assert!(tick(&mut second).is_empty(), "the lease has not lapsed yet");
    second.advance_time(Duration::from_secs(4));
    let call = one_call(&mut second);
    assert_eq!(header(&call, ":path"), Some("/api/v1/snapshot?after_version=7&wait=30"));
    answer(&mut second, &call, &signed_snapshot(&key, &bound().block(card().fingerprint), stamp(8)));
    assert_eq!(status(&request_with(&mut second, &card())), 401);
}

/// A worker configured after others have verified a snapshot starts with it, without a fetch.
#[test]
fn a_late_worker_starts_with_the_published_snapshot() {
    let key = TestSnapshotKey::new("a");
    let shared = SharedData::new();
    let config = config(&[&key]);
    let mut first = worker(&shared, 1, &config);
    let call = one_call(&mut first);
    answer(&mut first, &call, &signed_snapshot(&key, &bound(), stamp(7)));
    let mut late = worker(&shared, 2, &config);
    assert_eq!(status(&request_with(&mut late, &card())), 200);
    assert_eq!(status(&request_with(&mut late, &other_card())), 200);
    assert_eq!(request_with(&mut late, &other_card()).header("x-dm-user-id"), None);
}

#[test]
fn a_signed_snapshot_in_the_configuration_is_checked_like_a_fetched_one() {
    let key = TestSnapshotKey::new("a");
    let snapshot = signed_snapshot(&key, &bound(), stamp(7));
    let inline = |bytes: &[u8]| {
        json!({
            "policy": {"certificate_source": {"kind": "xfcc", "trust": "this_proxy"}, "default_mode": "mtls"},
            "snapshot": {"pinned_keys": [key.pinned_pem()], "signed_base64": certbind_shared::encoding::base64_encode(bytes)}
        })
        .to_string()
    };
    let mut host = worker(&SharedData::new(), 1, &inline(&snapshot));
    assert_eq!(status(&request_with(&mut host, &card())), 200);
    assert!(tick(&mut host).is_empty(), "no control plane to fetch from");

    let mut tampered = snapshot.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    let mut refused = FilterHost::load_filter().unwrap();
    refused.set_time_nanos(nanos(NOW));
    assert!(!refused.configure(inline(&tampered).as_bytes()).unwrap());
    let logs = refused.take_logs();
    assert!(logs.iter().any(|(_, l)| l.contains("snapshot.signed_base64")), "{logs:?}");
}

/// A deployment-sized snapshot: a million bindings verify, load and answer.
#[test]
fn a_million_bindings_load() {
    let key = TestSnapshotKey::new("a");
    let content = SnapshotContent::synthetic(1_000_000).bind(card().fingerprint, "01JBUSER00000000000000000A", "org-a");
    let bytes = signed_snapshot(&key, &content, stamp(7));
    assert!(bytes.len() > 50_000_000);
    let mut host = worker(&SharedData::new(), 1, &config(&[&key]));
    let call = one_call(&mut host);
    answer(&mut host, &call, &bytes);
    assert_eq!(metric(&host, "version"), 7);
    let allowed = request_with(&mut host, &card());
    assert_eq!(allowed.header("x-dm-user-id"), Some("01JBUSER00000000000000000A"));
    assert_eq!(request_with(&mut host, &other_card()).header("x-dm-user-id"), None);
}

/// A large snapshot is read only after the held one is let go, so a worker never holds two:
/// a refused one puts the held one back from shared data, and an accepted one replaces it
/// without the VM's memory growing by a second copy.
#[test]
fn large_snapshots_replace_each_other_without_a_second_copy() {
    let key = TestSnapshotKey::new("a");
    let content = SnapshotContent::synthetic(100_000).bind(card().fingerprint, "01JBUSER00000000000000000A", "org-a");
    let v7 = signed_snapshot(&key, &content, stamp(7));
    assert!(v7.len() > certbind_filter::snapshot::RELEASE_FIRST_BYTES);
    let mut tampered = signed_snapshot(&key, &content, stamp(8));
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x04;
    let v9 = signed_snapshot(&key, &content.clone().block(other_card().fingerprint), stamp(9));

    let shared = SharedData::new();
    let mut host = worker(&shared, 1, &config(&[&key]));
    let empty_vm = host.memory_bytes();
    let call = one_call(&mut host);
    answer(&mut host, &call, &v7);
    let loaded = host.memory_bytes();

    host.advance_time(Duration::from_secs(1));
    let call = one_call(&mut host);
    answer(&mut host, &call, &tampered);
    assert_eq!(metric(&host, "refused.bad_signature"), 1);
    assert_eq!(metric(&host, "version"), 7);
    assert_eq!(status(&request_with(&mut host, &card())), 200, "the held snapshot is back");

    // After the refusal, the next fetch waits out a backoff of at most 2 s.
    host.advance_time(Duration::from_secs(2));
    let call = one_call(&mut host);
    answer(&mut host, &call, &v9);
    assert_eq!(metric(&host, "version"), 9);
    assert_eq!(status(&request_with(&mut host, &other_card())), 401);

    // A second worker follows, letting go of its copy before taking the new one.
    let follower = worker(&shared, 2, &config(&[&key]));
    let follower_loaded = follower.memory_bytes();
    assert_eq!(metric(&follower, "version"), 9);

    let growth = host.memory_bytes() - loaded;
    assert!(
        growth < v7.len() / 5,
        "the VM grew by {growth} bytes across two more snapshots of {} bytes (empty VM {empty_vm}, loaded {loaded})",
        v7.len()
    );
    // The follower holds one buffer (an eighth of room to grow) and one chunk in transit.
    let bound = v7.len() + v7.len() / 8 + certbind_filter::snapshot::CHUNK_BYTES + (64 << 10);
    assert!(follower_loaded - empty_vm <= bound, "follower grew by {} bytes, bound {bound}", follower_loaded - empty_vm);
}

/// Shared data is shared by every plugin of the proxy with the same vm_id. A snapshot another
/// plugin writes there — newer, but signed by a key this configuration does not pin — is
/// refused by every worker, once, and the held one stays in force.
#[test]
fn a_snapshot_forged_into_shared_data_is_refused() {
    let key = TestSnapshotKey::new("a");
    let forger = TestSnapshotKey::new("forger");
    let shared = SharedData::new();
    let config = config(&[&key]);
    let mut fetcher = worker(&shared, 1, &config);
    let mut follower = worker(&shared, 2, &config);
    let call = one_call(&mut fetcher);
    answer(&mut fetcher, &call, &signed_snapshot(&key, &bound(), stamp(7)));
    follower.advance_time(Duration::from_millis(200));
    follower.tick().unwrap();
    assert_eq!(metric(&follower, "version"), 7);

    // The forger writes a higher version binding its own card, the way the filter publishes:
    // a 36-byte head (magic, version, length, chunk count, no delta) and one chunk.
    let forged = signed_snapshot(&forger, &bound().bind(other_card().fingerprint, "01JBMALLORY000000000000000", "org-a"), stamp(8));
    let head_key = shared.keys().into_iter().find(|k| k.ends_with(".head")).expect("a published head");
    let prefix = head_key.trim_end_matches("head");
    shared.set(&format!("{prefix}snapshot.8.0"), &forged, 0).unwrap();
    let mut head = b"CBH3".to_vec();
    head.extend_from_slice(&8u64.to_le_bytes());
    head.extend_from_slice(&(forged.len() as u64).to_le_bytes());
    head.extend_from_slice(&1u32.to_le_bytes());
    head.extend_from_slice(&[0u8; 12]);
    shared.set(&head_key, &head, 0).unwrap();

    for _ in 0..5 {
        follower.advance_time(Duration::from_millis(200));
        follower.tick().unwrap();
    }
    assert_eq!(metric(&follower, "refused.unknown_key"), 1, "refused once, not on every tick");
    assert_eq!(metric(&follower, "version"), 7);
    assert_eq!(request_with(&mut follower, &other_card()).header("x-dm-user-id"), None);
    assert_eq!(request_with(&mut follower, &card()).header("x-dm-user-id"), Some("01JBUSER00000000000000000A"));
}

/// After a restart nothing is held, so any unexpired snapshot would do: `max_age_seconds`
/// refuses a replayed old one.
#[test]
fn a_snapshot_older_than_the_maximum_age_is_refused() {
    let key = TestSnapshotKey::new("a");
    let config = json!({
        "policy": {"certificate_source": {"kind": "xfcc", "trust": "this_proxy"}, "default_mode": "mtls"},
        "snapshot": {
            "pinned_keys": [key.pinned_pem()],
            "max_age_seconds": 3600,
            "control_plane": {"cluster": CLUSTER, "authority": "127.0.0.1:8080", "credential": "proxy-secret"}
        }
    })
    .to_string();
    let mut host = worker(&SharedData::new(), 1, &config);
    let call = one_call(&mut host);
    let old = Stamp { version: 9, issued_at: NOW - 7200, expires_at: NOW + DAY };
    answer(&mut host, &call, &signed_snapshot(&key, &bound(), old));
    assert_eq!(metric(&host, "refused.too_old"), 1);
    assert_eq!(status(&request_with(&mut host, &card())), 503);
    host.advance_time(Duration::from_secs(3));
    let call = one_call(&mut host);
    answer(&mut host, &call, &signed_snapshot(&key, &bound(), stamp(10)));
    assert_eq!(status(&request_with(&mut host, &card())), 200);
}

const DELTA_TYPE: &str = "application/vnd.certbind.snapshot-delta";

fn answer_delta(host: &mut FilterHost, call: &PendingHttpCall, delta: &[u8]) {
    host.respond_http_call(call.token, &[(":status", "200"), ("content-type", DELTA_TYPE)], delta)
        .expect("the response is delivered");
}

/// Holding version 7, the filter asks for a delta; the control plane's delta takes it to 8,
/// and every other worker applies the same delta from shared data instead of copying.
#[test]
fn a_delta_moves_every_worker_to_the_next_version() {
    let key = TestSnapshotKey::new("a");
    let shared = SharedData::new();
    let config = config(&[&key]);
    let mut fetcher = worker(&shared, 1, &config);
    let mut follower = worker(&shared, 2, &config);
    let v7 = signed_snapshot(&key, &bound(), stamp(7));
    let v8 = signed_snapshot(&key, &bound().block(card().fingerprint), stamp(8));
    let first = one_call(&mut fetcher);
    assert_eq!(header(&first, "accept"), Some(SNAPSHOT_TYPE), "nothing held: a whole snapshot");
    answer(&mut fetcher, &first, &v7);
    follower.advance_time(Duration::from_millis(200));
    follower.tick().unwrap();
    assert_eq!(metric(&follower, "version"), 7);

    let poll = one_call(&mut fetcher);
    assert_eq!(header(&poll, "accept"), Some(&*format!("{DELTA_TYPE}, {SNAPSHOT_TYPE}")));
    let delta = delta_between(&v7, &v8);
    assert!(delta.len() < 1024, "a one-record change is a small delta ({} bytes)", delta.len());
    answer_delta(&mut fetcher, &poll, &delta);
    assert_eq!(metric(&fetcher, "deltas_applied"), 1);
    assert_eq!(metric(&fetcher, "version"), 8);
    assert_eq!(status(&request_with(&mut fetcher, &card())), 401);

    follower.advance_time(Duration::from_millis(200));
    follower.tick().unwrap();
    assert_eq!(metric(&follower, "version"), 8);
    assert_eq!(metric(&follower, "deltas_applied"), 1, "the follower applied the shared delta");
    assert_eq!(status(&request_with(&mut follower, &card())), 401);
}

/// A delta that does not start at the held version, or whose result does not match its
/// signed header, is refused; the held snapshot stays, and the next fetch asks for the whole.
#[test]
fn a_bad_delta_is_refused_and_the_whole_snapshot_is_asked_for() {
    let key = TestSnapshotKey::new("a");
    let v6 = signed_snapshot(&key, &SnapshotContent::default(), stamp(6));
    let v7 = signed_snapshot(&key, &bound(), stamp(7));
    let v8 = signed_snapshot(&key, &bound().block(card().fingerprint), stamp(8));
    let wrong_base = delta_between(&v6, &v8);
    let mut tampered = delta_between(&v7, &v8);
    // A byte inside the first step's edits (after the chain's 24-byte head).
    tampered[30] ^= 0x01;
    for (name, delta, kind) in [("from another version", wrong_base, "malformed"), ("tampered", tampered, "")] {
        let mut host = loaded(&key);
        let poll = one_call(&mut host);
        answer_delta(&mut host, &poll, &delta);
        assert_eq!(metric(&host, "version"), 7, "{name}");
        assert_eq!(metric(&host, "deltas_applied"), 0, "{name}");
        let refusals: i64 = certbind_filter::snapshot::REFUSAL_KINDS.iter().map(|k| metric(&host, &format!("refused.{k}"))).sum();
        assert_eq!(refusals, 1, "{name}: one refusal counted");
        if !kind.is_empty() {
            assert_eq!(metric(&host, &format!("refused.{kind}")), 1, "{name}");
        }
        assert_eq!(status(&request_with(&mut host, &card())), 200, "{name}");
        host.advance_time(Duration::from_secs(3));
        let next = one_call(&mut host);
        assert_eq!(header(&next, "accept"), Some(SNAPSHOT_TYPE), "{name}: the whole snapshot next");
    }
}

/// The delta from `held` to a version of it whose binding `index` carries an unknown flag bit,
/// signed: its every length and digest is the one its header names, its structure is not (a
/// signer's fault, found only once the result is written).
fn delta_to_signed_malformed(key: &TestSnapshotKey, held: &[u8], index: usize, stamp: Stamp) -> Vec<u8> {
    use certbind_shared::snapshot::format::BODY_START;
    use certbind_shared::snapshot::{Delta, DeltaStep, Section, SectionEdit, SnapshotEncoder, SnapshotView, BINDING_RECORD};
    use certbind_tests::snapshots::finish_signed;
    let view = SnapshotView::open_unauthenticated(held.to_vec()).unwrap();
    let mut records = view.section_bytes(Section::Bindings).to_vec();
    let record = index * BINDING_RECORD..(index + 1) * BINDING_RECORD;
    records[record.end - 1] |= 0x80;
    let mut encoder = SnapshotEncoder::continuing(&view, 0);
    encoder.push_binding_records(&records).unwrap();
    let signed = finish_signed(key, encoder, stamp);
    let inserted = records[record].to_vec();
    let edits = vec![SectionEdit::Edited { section: Section::Bindings, deleted: Vec::new(), inserted }];
    let steps = vec![DeltaStep { edits }];
    Delta { from_version: view.version(), steps, signed_header: signed[..BODY_START].to_vec() }.encode()
}

/// A large snapshot takes deltas in its own buffer. A refused one — tampered, or signed but
/// malformed (the buffer rewritten before the refusal: the held snapshot is read back from
/// shared data) — leaves the held one in force; an accepted one replaces it. Neither the
/// fetching worker nor a follower applying the shared delta grows by a second snapshot.
#[test]
fn a_refused_delta_on_a_large_snapshot_leaves_the_held_one_in_force() {
    let key = TestSnapshotKey::new("a");
    let content = SnapshotContent::synthetic(100_000).bind(card().fingerprint, "01JBUSER00000000000000000A", "org-a");
    let v7 = signed_snapshot(&key, &content, stamp(7));
    assert!(v7.len() > certbind_filter::snapshot::RELEASE_FIRST_BYTES);
    let v8 = signed_snapshot(&key, &content.clone().block(other_card().fingerprint), stamp(8));
    let mut tampered = delta_between(&v7, &v8);
    // A byte of the inserted blocklist record: the blocklist no longer has its signed digest.
    let at = tampered.len() - 520 - 2;
    tampered[at] ^= 0x01;
    let malformed = delta_to_signed_malformed(&key, &v7, 50_000, stamp(8));
    let mut revoked = content.clone();
    revoked.bindings.retain(|(fingerprint, ..)| *fingerprint != card().fingerprint);
    let v9 = signed_snapshot(&key, &revoked, stamp(9));
    let revoke = delta_between(&v7, &v9);

    // A fetching worker and a follower, both holding version 7, and their VMs' memory then.
    let pair = || {
        let shared = SharedData::new();
        let mut host = worker(&shared, 1, &config(&[&key]));
        let call = one_call(&mut host);
        answer(&mut host, &call, &v7);
        let follower = worker(&shared, 2, &config(&[&key]));
        assert_eq!(metric(&follower, "version"), 7);
        let memory = (host.memory_bytes(), follower.memory_bytes());
        (host, follower, memory)
    };
    let grew_little = |vm: &FilterHost, before: usize, name: &str| {
        let growth = vm.memory_bytes() - before;
        assert!(growth < v7.len() / 5, "{name} grew by {growth} bytes over a {}-byte snapshot", v7.len());
    };

    // Tampered: refused before a byte is written. Signed but malformed: refused once written,
    // and the held snapshot read back from shared data.
    let refused = [("tampered", &tampered, "bad_signature", 0), ("signed but malformed", &malformed, "malformed", 1)];
    for (name, delta, kind, read_back) in refused {
        let (mut host, mut follower, (loaded, _)) = pair();
        host.advance_time(Duration::from_secs(1));
        let poll = one_call(&mut host);
        assert_eq!(header(&poll, "accept"), Some(&*format!("{DELTA_TYPE}, {SNAPSHOT_TYPE}")), "{name}");
        answer_delta(&mut host, &poll, delta);
        assert_eq!(metric(&host, &format!("refused.{kind}")), 1, "{name}");
        assert_eq!(metric(&host, "deltas_applied"), 0, "{name}");
        assert_eq!(metric(&host, "version"), 7, "{name}");
        assert_eq!(metric(&host, "adopted_from_shared"), read_back, "{name}");
        let bound = request_with(&mut host, &card());
        assert_eq!(bound.header("x-dm-user-id"), Some("01JBUSER00000000000000000A"), "{name}: the held one in force");
        assert_eq!(status(&request_with(&mut host, &other_card())), 200, "{name}");
        grew_little(&host, loaded, name);
        follower.advance_time(Duration::from_millis(200));
        follower.tick().unwrap();
        assert_eq!(metric(&follower, "version"), 7, "{name}: nothing new published");
        // The whole snapshot is asked for next.
        host.advance_time(Duration::from_secs(3));
        assert_eq!(header(&one_call(&mut host), "accept"), Some(SNAPSHOT_TYPE), "{name}");
    }

    let (mut host, mut follower, (loaded, follower_loaded)) = pair();
    host.advance_time(Duration::from_secs(1));
    let poll = one_call(&mut host);
    answer_delta(&mut host, &poll, &revoke);
    assert_eq!(metric(&host, "deltas_applied"), 1);
    assert_eq!(metric(&host, "version"), 9);
    assert_eq!(request_with(&mut host, &card()).header("x-dm-user-id"), None, "the card's binding is gone");
    follower.advance_time(Duration::from_millis(200));
    follower.tick().unwrap();
    assert_eq!(metric(&follower, "version"), 9);
    assert_eq!(metric(&follower, "deltas_applied"), 1, "the follower applied the shared delta");
    assert_eq!(request_with(&mut follower, &card()).header("x-dm-user-id"), None);
    grew_little(&host, loaded, "the fetching worker");
    grew_little(&follower, follower_loaded, "the follower");
}
