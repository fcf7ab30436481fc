//! Deltas: size, byte-for-byte results over random edits and chains, and every refusal by
//! its exact variant.

use super::delta::{self, DELTA_HEAD_LEN};
use super::tests::{
    ca_key, fingerprint, header_for, issuer_jwks, owner, push_content, reseal, signed, small_content, verifier, Content,
    Counter, Stamp, TestSigner, DAY, DOD_CA, NOW, SHARED_DN_CA, STAMP,
};
use super::*;
use crate::identity::{IdentityData, Owner, SanKind};
use crate::Fingerprint;

fn stamp(version: u64) -> Stamp {
    Stamp { version, ..STAMP }
}

/// `content` encoded by an encoder continuing `base` (its orgs and strings grow only), signed.
fn signed_continuing(base: &SnapshotView, content: &Content, stamp: &Stamp, signer: &TestSigner) -> Vec<u8> {
    let mut encoder = SnapshotEncoder::continuing(base, 0);
    push_content(&mut encoder, content);
    let unsigned = encoder.finish(&header_for(stamp, signer.pinned().key_id(), signer.algorithm())).unwrap();
    let signature = signer.sign(unsigned.message());
    unsigned.attach_signature(&signature).unwrap()
}

fn bulk_content(bindings: u64) -> Content {
    let mut content = small_content();
    for i in 0..bindings {
        let user = format!("01HV{i:022}");
        content.bindings.insert(fingerprint("bulk", i), (user, format!("org-{}", i % 5), i % 9 != 0));
    }
    content
}

fn random_org(rng: &mut Counter) -> Option<String> {
    match rng.next() % 5 {
        0 => None,
        // New orgs appear over time.
        n => Some(format!("org-{}", n + rng.next() % 3)),
    }
}

/// Applies a few random edits of every kind to `content`, one binding added and one removed
/// among them (so bucket sizes change).
fn random_edits(content: &mut Content, rng: &mut Counter, round: u64) {
    let added = rng.next();
    content.bindings.insert(fingerprint("added", added), (format!("01HX{:022}", added % 1_000), "org-1".into(), true));
    let victim = content.bindings.keys().nth((rng.next() % 1_000) as usize).copied();
    if let Some(victim) = victim {
        content.bindings.remove(&victim);
    }
    for _ in 0..1 + rng.next() % 6 {
        let n = rng.next();
        let key = fingerprint("bulk", n % 8_000);
        match n % 11 {
            0 => {
                content.bindings.remove(&key);
            }
            1 => {
                let user = if n.is_multiple_of(3) { format!("text-user-{n}") } else { format!("01HW{:022}", n % 100_000) };
                content.bindings.insert(key, (user, format!("org-{}", n % 7), n.is_multiple_of(2)));
            }
            2 => {
                content.blocklist.insert((key, random_org(rng)));
            }
            3 => {
                let victim = content.blocklist.iter().next().cloned();
                if let Some(victim) = victim {
                    content.blocklist.remove(&victim);
                }
            }
            4 => {
                content.revoked.insert((DOD_CA.into(), format!("{:x}", n % 500), random_org(rng)));
            }
            5 => {
                content.principals.insert((key, random_org(rng)), format!("svc:{round}:{}", n % 13));
            }
            6 => {
                let victim = content.principals.keys().next().cloned();
                if let Some(victim) = victim {
                    content.principals.remove(&victim);
                }
            }
            7 => {
                let kind = if n.is_multiple_of(2) { SanKind::Email } else { SanKind::Upn };
                content.san_rules.insert((kind, format!("d{}.mil", n % 4), format!("CN=CA {}", n % 2), random_org(rng)));
            }
            8 => {
                content.constraints.insert((random_org(rng), ConstraintKind::RequiredPolicyOid, format!("1.2.{}", n % 5)));
            }
            9 => {
                let audiences = (0..n % 3).map(|a| format!("api://{a}")).collect();
                content.issuers.insert((format!("https://idp{}.example", n % 3), random_org(rng)), (audiences, issuer_jwks((n % 4) as u8)));
            }
            _ => {
                let victim = content.issuers.keys().next().cloned();
                if let Some(victim) = victim {
                    content.issuers.remove(&victim);
                }
            }
        }
    }
}

/// Applies `chain` to `held` both ways — copying, and in place on a copy of `held` that owns
/// its bytes — which must agree: the same bytes and answers, or the same refusal with the held
/// snapshot handed back as it was, in its own buffer (or, only when the signed result is
/// malformed — a refusal at a body byte — that buffer spent). Returns what the in-place apply
/// gave.
fn apply_both(
    verifier: &SnapshotVerifier,
    held: &SnapshotView,
    chain: &[u8],
    now: i64,
) -> Result<SnapshotView, SnapshotError> {
    let copied = verifier.apply_delta(held, chain, now);
    let unshared = held.unshared();
    let buffer_at = unshared.as_bytes().as_ptr();
    let capacity = unshared.shared_bytes().capacity();
    match (copied, verifier.apply_delta_in_place(unshared, chain, now)) {
        (Ok(copied), Ok(in_place)) => {
            assert_same_answers(&in_place, &copied);
            if in_place.as_bytes().len() <= capacity {
                assert_eq!(in_place.as_bytes().as_ptr(), buffer_at, "built in the held buffer");
            }
            Ok(in_place)
        }
        (Err(error), Err(InPlaceRefusal { error: in_place, unapplied })) => {
            assert_eq!(in_place, error);
            let structure = matches!(error, SnapshotError::Malformed { at, .. } if at >= format::BODY_START)
                || matches!(error, SnapshotError::IssuerKeys { .. });
            match unapplied {
                Unapplied::Held(back) => {
                    assert!(!structure, "{error:?} comes after writing, yet the held snapshot came back");
                    assert_eq!(back.as_bytes().as_ptr(), buffer_at, "the same buffer back");
                    assert_same_answers(&back, held);
                }
                Unapplied::Spent(buffer) => {
                    assert!(structure, "{error:?} comes before writing, yet the buffer was spent");
                    if buffer.len() <= capacity {
                        assert_eq!(buffer.as_ptr(), buffer_at, "the held buffer, spent");
                    }
                }
            }
            Err(error)
        }
        (copied, in_place) => panic!("copying gave {copied:?}, in place {:?}", in_place.map_err(|r| r.error)),
    }
}

/// Every lookup agrees between two views.
fn assert_same_answers(a: &SnapshotView, b: &SnapshotView) {
    assert_eq!(a.as_bytes(), b.as_bytes());
    for (fp, _) in b.bindings().step_by(7) {
        assert_eq!(a.card_binding(&fp), b.card_binding(&fp));
    }
    for i in 0..200 {
        let probe = Fingerprint(fingerprint("bulk", i));
        assert_eq!(a.card_binding(&probe), b.card_binding(&probe));
        assert_eq!(a.thumbprint_mapping(&probe), b.thumbprint_mapping(&probe));
    }
    let orgs: Vec<Option<&str>> = std::iter::once(None).chain(b.orgs().map(Some)).collect();
    for org in &orgs {
        assert_eq!(a.has_revoked_serials(*org), b.has_revoked_serials(*org), "{org:?}");
        let owner = Owner::from_org_id(*org);
        assert_eq!(a.constraints(owner), b.constraints(owner), "{org:?}");
        for issuer in b.issuers() {
            assert_eq!(
                a.token_issuer(issuer.issuer, owner).map(|r| (r.owner, r.audiences.to_vec(), r.keys.len())),
                b.token_issuer(issuer.issuer, owner).map(|r| (r.owner, r.audiences.to_vec(), r.keys.len()))
            );
        }
        for (fp, _) in b.blocklist() {
            assert_eq!(a.is_blocklisted(&fp, *org), b.is_blocklisted(&fp, *org));
        }
    }
}

#[test]
fn applying_the_delta_between_two_snapshots_gives_the_second_byte_for_byte() {
    let signer = TestSigner::ed25519(20);
    let verifier = verifier(&[&signer]);
    let mut rng = Counter(2026);
    // Below and above the sizes from which bucket tables and the lookup index are kept.
    for bindings in [1_500u64, 5_000] {
        let mut content = bulk_content(bindings);
        let mut held = verifier.verify(signed(&content, &stamp(1), &signer), NOW, None).unwrap();
        let mut pending: Vec<Delta> = Vec::new();
        let chain_base = held.clone();
        for round in 2..14u64 {
            random_edits(&mut content, &mut rng, round);
            // Mostly a patched snapshot (orgs and strings grow); every fifth one built afresh
            // (both tables replaced).
            let bytes = if round % 5 == 0 {
                signed(&content, &stamp(round), &signer)
            } else {
                signed_continuing(&held, &content, &stamp(round), &signer)
            };
            let next = verifier.verify(bytes.clone(), NOW, Some(held.version())).unwrap();
            let delta = between(&held, &next);
            assert_eq!(Delta::decode(&delta.encode()).unwrap(), delta);
            let applied = apply_both(&verifier, &held, &delta.encode(), NOW).unwrap();
            assert_eq!(applied.as_bytes(), &bytes[..], "{bindings} bindings, round {round}");
            assert_same_answers(&applied, &next);
            pending.push(delta);
            // The view applied in place carries on: deltas apply to it in turn.
            held = applied;
        }
        // The steps joined into one chain take the first snapshot to the last.
        let joined = chain(&pending).unwrap();
        assert_eq!(joined.steps.len(), pending.len());
        let applied = apply_both(&verifier, &chain_base, &joined.encode(), NOW).unwrap();
        assert_eq!(applied.as_bytes(), held.as_bytes());
        assert_eq!(applied.version(), 13);
    }
}

#[test]
fn a_revoke_is_a_few_hundred_bytes_and_re_digests_one_bucket() {
    let signer = TestSigner::p256(21);
    let verifier = verifier(&[&signer]);
    let mut content = bulk_content(20_000);
    // The control plane's user ids are ULIDs, held in the record: a continuing encoder that
    // is handed the bindings again writes the same bytes (a text id would be a new string).
    content.bindings.retain(|_, (user, _, _)| !user.starts_with("user-"));
    let held = verifier.verify(signed(&content, &stamp(1), &signer), NOW, None).unwrap();
    let mut revoked = content.clone();
    let (gone, _) = revoked.bindings.iter().nth(777).map(|(k, v)| (*k, v.clone())).unwrap();
    revoked.bindings.remove(&gone);
    let next = signed_continuing(&held, &revoked, &stamp(2), &signer);
    let next = verifier.verify(next, NOW, Some(1)).unwrap();
    let delta = between(&held, &next);
    let encoded = delta.encode();
    // Head, one step with one edit deleting one 32-byte key, the signed header.
    assert_eq!(encoded.len(), DELTA_HEAD_LEN + 1 + (1 + 1 + 4 + 32 + 4) + format::BODY_START);
    assert!(encoded.len() < 1024);
    let applied = apply_both(&verifier, &held, &encoded, NOW).unwrap();
    assert_eq!(applied.card_binding(&Fingerprint(gone)), None);
    assert_eq!(applied.as_bytes(), next.as_bytes());
    // A block by an org adds its owner's org to nothing and touches the blocklist only.
    let mut blocked = revoked.clone();
    blocked.blocklist.insert((fingerprint("bulk", 5), Some("org-3".into())));
    let third = verifier.verify(signed_continuing(&next, &blocked, &stamp(3), &signer), NOW, Some(2)).unwrap();
    let delta = between(&next, &third);
    let sections: Vec<Section> = delta.steps[0].edits.iter().map(SectionEdit::section).collect();
    assert_eq!(sections, vec![Section::Blocklist]);
    let applied = apply_both(&verifier, &applied, &delta.encode(), NOW).unwrap();
    assert!(applied.is_blocklisted(&Fingerprint(fingerprint("bulk", 5)), Some("org-3")));
    assert!(!applied.is_blocklisted(&Fingerprint(fingerprint("bulk", 5)), Some("org-4")));
}

/// A held snapshot at version 7 and the delta to version 8 (a binding removed, a serial
/// revoked by org-b, a new org's constraint), signed by `signer`.
fn seven_to_eight(signer: &TestSigner) -> (SnapshotView, Vec<u8>, Vec<u8>) {
    let held = SnapshotView::open_unauthenticated(signed(&small_content(), &STAMP, signer)).unwrap();
    let mut content = small_content();
    content.bindings.remove(&fingerprint("b", 2));
    content.revoked.insert((DOD_CA.into(), "0x77".into(), Some("org-b".into())));
    content.constraints.insert((Some("org-c".into()), ConstraintKind::RequiredPolicyOid, "1.2.3".into()));
    // CA A's CRL lists one more serial; CA B's first CRL is verified.
    content.crl_revoked.insert((ca_key(b"ca-a"), "3003".into()));
    content.cas.insert(ca_key(b"ca-b"), (SHARED_DN_CA.into(), true, true, Some(NOW + DAY)));
    let eight = signed_continuing(&held, &content, &stamp(8), signer);
    let next = SnapshotView::open_unauthenticated(eight.clone()).unwrap();
    let chain = between(&held, &next).encode();
    (held, chain, eight)
}

#[test]
fn a_delta_is_refused_unless_its_signed_end_verifies_and_follows_the_held_version() {
    let signer = TestSigner::p256(22);
    let pinned = verifier(&[&signer]);
    let (held, chain, eight) = seven_to_eight(&signer);
    let applied = apply_both(&pinned, &held, &chain, NOW).unwrap();
    assert_eq!(applied.as_bytes(), &eight[..]);
    assert!(applied.is_revoked(DOD_CA, "77", Some("org-b")));
    assert!(applied.has_revoked_serials(Some("org-b")));
    assert!(applied.constraints(Owner::Org("org-c")).is_some());
    assert!(applied.is_crl_revoked(&ca_key(b"ca-a"), "3003"));
    assert_eq!(applied.certificate_authority(&ca_key(b"ca-b")).and_then(|ca| ca.crl_valid_until), Some(NOW + DAY));

    // Another key signed it; a key id no one pinned.
    let stranger = TestSigner::p256(23);
    let (_, by_stranger, _) = seven_to_eight(&stranger);
    assert_eq!(
        apply_both(&pinned, &held, &by_stranger, NOW).unwrap_err(),
        SnapshotError::UnknownKey { key_id: stranger.pinned().key_id().to_owned() }
    );
    // The pinned key's id, another key's signature.
    let mut forged = chain.clone();
    let header_at = forged.len() - format::BODY_START;
    let signature = stranger.sign(&forged[header_at..header_at + format::HEADER_LEN]);
    forged[header_at + format::HEADER_LEN..].copy_from_slice(&signature);
    assert_eq!(apply_both(&pinned, &held, &forged, NOW).unwrap_err(), SnapshotError::BadSignature);

    // Not newer than what is held: replayed, or rolled back.
    assert_eq!(apply_both(&pinned, &applied, &chain, NOW).unwrap_err(), SnapshotError::NotNewer { version: 8 });
    let later = SnapshotView::open_unauthenticated(signed(&small_content(), &stamp(9), &signer)).unwrap();
    assert_eq!(apply_both(&pinned, &later, &chain, NOW).unwrap_err(), SnapshotError::Rollback { held: 9, offered: 8 });
    // Expired, or issued too far ahead.
    assert_eq!(
        apply_both(&pinned, &held, &chain, NOW + DAY).unwrap_err(),
        SnapshotError::Expired { expires_at: NOW + DAY, now: NOW + DAY }
    );
    let early = NOW - 60 - MAX_CLOCK_SKEW_SECS - 1;
    assert_eq!(
        apply_both(&pinned, &held, &chain, early).unwrap_err(),
        SnapshotError::IssuedInFuture { issued_at: NOW - 60, now: early }
    );
    // From another version than the one held.
    let six = SnapshotView::open_unauthenticated(signed(&small_content(), &stamp(6), &signer)).unwrap();
    assert_eq!(apply_both(&pinned, &six, &chain, NOW).unwrap_err(), SnapshotError::DeltaBase { held: 6, from: 7 });
}

#[test]
fn a_delta_whose_result_is_not_the_signed_one_is_refused() {
    let signer = TestSigner::ed25519(24);
    let pinned = verifier(&[&signer]);
    let (held, chain, _) = seven_to_eight(&signer);
    let mut delta = Delta::decode(&chain).unwrap();
    let revoked = delta.steps[0]
        .edits
        .iter()
        .position(|e| e.section() == Section::Revoked)
        .unwrap();
    // A byte of an inserted record changed (its owner): same length, another digest.
    let mut changed = delta.clone();
    if let SectionEdit::Edited { inserted, .. } = &mut changed.steps[0].edits[revoked] {
        inserted[34] ^= 0x01;
    }
    assert_eq!(
        apply_both(&pinned, &held, &changed.encode(), NOW).unwrap_err(),
        SnapshotError::DigestMismatch { section: Section::Revoked }
    );
    // The insert left out: the section comes out shorter than signed.
    if let SectionEdit::Edited { inserted, .. } = &mut delta.steps[0].edits[revoked] {
        inserted.clear();
    }
    let expected = held.section_bytes(Section::Revoked).len() + format::REVOKED_RECORD;
    assert_eq!(
        apply_both(&pinned, &held, &delta.encode(), NOW).unwrap_err(),
        SnapshotError::DeltaLength { section: Section::Revoked, expected, built: expected - format::REVOKED_RECORD }
    );
    // An edit that names a section the signed end says is unchanged.
    let mut extra = Delta::decode(&chain).unwrap();
    extra.steps[0].edits.retain(|e| e.section() != Section::Principals);
    extra.steps[0].edits.push(SectionEdit::Edited {
        section: Section::Principals,
        deleted: held.section_bytes(Section::Principals)[..format::OWNED_KEY_LEN].to_vec(),
        inserted: Vec::new(),
    });
    extra.steps[0].edits.sort_by_key(|e| e.section().table_index());
    let principals = held.section_bytes(Section::Principals).len();
    assert_eq!(
        apply_both(&pinned, &held, &extra.encode(), NOW).unwrap_err(),
        SnapshotError::DeltaLength {
            section: Section::Principals,
            expected: principals,
            built: principals - format::PRINCIPAL_RECORD
        }
    );
}

#[test]
fn truncated_padded_and_malformed_chains_are_refused_where_they_break() {
    let signer = TestSigner::ed25519(25);
    let pinned = verifier(&[&signer]);
    let (held, chain, _) = seven_to_eight(&signer);
    let steps_end = chain.len() - format::BODY_START;
    let malformed = |step, at, problem| SnapshotError::DeltaMalformed { step, at, problem };
    let refused = |bytes: Vec<u8>| apply_both(&pinned, &held, &bytes, NOW).unwrap_err();

    // Cut at the end: the signed header is no longer where it should be.
    assert_eq!(refused(chain[..chain.len() - 1].to_vec()), SnapshotError::BadMagic);
    // Bytes after the signed header: likewise.
    let mut trailing = chain.clone();
    trailing.push(0);
    assert_eq!(refused(trailing), SnapshotError::BadMagic);
    // Bytes cut out of the steps, or added between the steps and the header.
    let mut cut = chain.clone();
    cut.remove(steps_end - 1);
    assert!(matches!(refused(cut), SnapshotError::DeltaMalformed { step: 0, problem: "runs past the end of the steps", .. }));
    let mut padded = chain.clone();
    padded.insert(steps_end, 0);
    assert_eq!(refused(padded), malformed(1, steps_end, "bytes between the last step and the signed header"));
    // The head.
    let mut magic = chain.clone();
    magic[0] ^= 1;
    assert_eq!(refused(magic), malformed(0, 0, "not a delta chain (bad magic)"));
    let mut no_steps = chain.clone();
    no_steps[10..12].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(refused(no_steps), malformed(0, 10, "step count is not 1 to 1024"));
    let mut format = chain.clone();
    format[8] = 2;
    assert_eq!(refused(format), SnapshotError::UnsupportedFormat { format_version: 2 });
    assert_eq!(
        refused(chain[..DELTA_HEAD_LEN + 10].to_vec()),
        malformed(0, DELTA_HEAD_LEN + 10, "shorter than a chain's head and a signed header")
    );
    assert_eq!(
        apply_both(&pinned, &held, &vec![0; delta::MAX_DELTA_BYTES + 1], NOW).unwrap_err(),
        SnapshotError::TooLarge { len: delta::MAX_DELTA_BYTES + 1, max: delta::MAX_DELTA_BYTES }
    );

    // Edits: an order, a kind, keys; each named at its byte.
    let decoded = Delta::decode(&chain).unwrap();
    let with_edits = |edits: Vec<SectionEdit>| {
        let mut delta = decoded.clone();
        delta.steps = vec![DeltaStep { edits }];
        delta.encode()
    };
    let first_edit = DELTA_HEAD_LEN + 1;
    let key = |i: u64| fingerprint("k", i);
    let mut keys = [key(1), key(2)];
    keys.sort();
    let blocklist = |deleted: Vec<u8>, inserted: Vec<u8>| SectionEdit::Edited { section: Section::Blocklist, deleted, inserted };
    assert_eq!(
        refused(with_edits(vec![blocklist(Vec::new(), Vec::new()), blocklist(Vec::new(), Vec::new())])),
        malformed(0, first_edit + 10, "sections not strictly ascending")
    );
    assert_eq!(
        refused(with_edits(vec![SectionEdit::Replaced { section: Section::Bindings, bytes: Vec::new() }])),
        malformed(0, first_edit + 1, "edit kind not allowed for this section")
    );
    assert_eq!(
        refused(with_edits(vec![SectionEdit::Appended { section: Section::Issuers, bytes: Vec::new() }])),
        malformed(0, first_edit + 1, "edit kind not allowed for this section")
    );
    let owned_key = |fp: [u8; 32]| [&fp[..], &[0xff, 0xff, 0xff]].concat();
    let descending = [owned_key(keys[1]), owned_key(keys[0])].concat();
    assert_eq!(
        refused(with_edits(vec![blocklist(descending, Vec::new())])),
        malformed(0, first_edit + 6, "deleted keys not strictly ascending")
    );
    assert_eq!(
        refused(with_edits(vec![blocklist(owned_key(keys[0]), owned_key(keys[0]))])),
        malformed(0, first_edit + 6 + 35 + 4, "a key both deleted and inserted")
    );
    let mut huge_count = with_edits(vec![blocklist(owned_key(keys[0]), Vec::new())]);
    huge_count[first_edit + 2..first_edit + 6].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(refused(huge_count), SnapshotError::DeltaMalformed { step: 0, .. }));
}

#[test]
fn an_inserted_record_is_checked_like_an_opened_one() {
    let signer = TestSigner::p256(26);
    let pinned = verifier(&[&signer]);
    let held = SnapshotView::open_unauthenticated(signed(&small_content(), &STAMP, &signer)).unwrap();
    // Version 8 with one binding's flags damaged and the digests made to fit, re-signed: a
    // delta inserting that record reaches the structure check.
    let bindings_at = format::BODY_START;
    let damaged = reseal(&signed(&small_content(), &stamp(8), &signer), &signer, |b| b[bindings_at + 51] |= 0x80);
    let record = damaged[bindings_at..bindings_at + format::BINDING_RECORD].to_vec();
    let delta = Delta {
        from_version: 7,
        steps: vec![DeltaStep {
            edits: vec![SectionEdit::Edited { section: Section::Bindings, deleted: Vec::new(), inserted: record }],
        }],
        signed_header: damaged[..format::BODY_START].to_vec(),
    };
    assert_eq!(
        apply_both(&pinned, &held, &delta.encode(), NOW).unwrap_err(),
        SnapshotError::Malformed { section: Section::Bindings, at: bindings_at + 51, problem: "unknown flag bits" }
    );
}

/// The committed delta: [`super::tests::FORMAT_V4_VECTOR`] (version 7) to version 8 as
/// `seven_to_eight` makes it, signed by `TestSigner::ed25519(1)`. Regenerate with
/// `CERTBIND_WRITE_SNAPSHOT_VECTOR=1` only with a format change.
const DELTA_V4_VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/snapshot/delta-v4-unbind-revoke-new-org-7-to-8-ed25519.bin"
);

#[test]
fn the_committed_delta_vector_decodes_applies_and_re_encodes_byte_for_byte() {
    let signer = TestSigner::ed25519(1);
    let (held, chain, eight) = seven_to_eight(&signer);
    assert_eq!(held.as_bytes(), &std::fs::read(super::tests::FORMAT_V4_VECTOR).unwrap()[..]);
    if std::env::var_os("CERTBIND_WRITE_SNAPSHOT_VECTOR").is_some() {
        std::fs::write(DELTA_V4_VECTOR, &chain).unwrap();
    }
    let committed = std::fs::read(DELTA_V4_VECTOR).expect("committed delta vector");
    assert_eq!(committed, chain, "the delta encoding changed: that is a format change");
    let decoded = Delta::decode(&committed).unwrap();
    assert_eq!(decoded.encode(), committed);
    assert_eq!((decoded.from_version, decoded.to_version()), (7, 8));
    let sections: Vec<Section> = decoded.steps[0].edits.iter().map(SectionEdit::section).collect();
    assert_eq!(
        sections,
        vec![Section::Bindings, Section::Revoked, Section::CrlRevoked, Section::Constraints, Section::Cas, Section::Orgs, Section::Strings]
    );
    let applied = apply_both(&verifier(&[&signer]), &held, &committed, NOW).unwrap();
    assert_eq!(applied.as_bytes(), &eight[..]);
    assert_eq!(applied.card_binding(&Fingerprint(fingerprint("b", 2))), None);
    assert_eq!(applied.orgs().collect::<Vec<_>>(), vec!["org-a", "org-b", "org-c"]);
}

#[test]
fn owners_of_revocations_are_counted_through_deltas() {
    let signer = TestSigner::ed25519(27);
    let pinned = verifier(&[&signer]);
    let mut content = Content::default();
    content.bindings.insert(fingerprint("b", 1), ("u".into(), "org-a".into(), true));
    let held = pinned.verify(signed(&content, &stamp(1), &signer), NOW, None).unwrap();
    assert!(!held.has_revoked_serials(Some("org-a")));
    content.revoked.insert((DOD_CA.into(), "1".into(), Some("org-a".into())));
    let two = pinned.verify(signed_continuing(&held, &content, &stamp(2), &signer), NOW, Some(1)).unwrap();
    let held = apply_both(&pinned, &held, &between(&held, &two).encode(), NOW).unwrap();
    assert!(held.has_revoked_serials(Some("org-a")));
    assert!(!held.has_revoked_serials(None));
    content.revoked.clear();
    let three = pinned.verify(signed_continuing(&held, &content, &stamp(3), &signer), NOW, Some(2)).unwrap();
    let held = apply_both(&pinned, &held, &between(&held, &three).encode(), NOW).unwrap();
    assert!(!held.has_revoked_serials(Some("org-a")));
    assert_eq!(owner(&None), Owner::Platform);
}

/// Large edits in one chain, each section moving its own way: the bindings shrink while the
/// blocklist, revoked serials and principals grow (the bytes after them move up, those before
/// them down), then the reverse; a step built afresh replaces the orgs and strings tables
/// with ones of another size. In place and copying, every step and the whole chain give the
/// signed snapshot byte for byte.
#[test]
fn sections_growing_and_shrinking_by_hundreds_of_records_apply_in_place() {
    let signer = TestSigner::ed25519(28);
    let verifier = verifier(&[&signer]);
    let mut content = bulk_content(6_000);
    let first = verifier.verify(signed(&content, &stamp(1), &signer), NOW, None).unwrap();
    let mut held = first.clone();
    let mut steps = Vec::new();
    for version in 2..=5u64 {
        let n = version * 1_000;
        match version {
            2 | 4 => {
                let gone: Vec<[u8; 32]> = content.bindings.keys().step_by(9).copied().collect();
                gone.iter().for_each(|fp| {
                    content.bindings.remove(fp);
                });
                for i in 0..400 {
                    content.blocklist.insert((fingerprint("blocked", n + i), random_org(&mut Counter(n + i))));
                    content.revoked.insert((DOD_CA.into(), format!("{:x}", n + i), None));
                    let mapped = (fingerprint("mapped", n + i), Some(format!("org-{}", i % 3)));
                    content.principals.insert(mapped, format!("svc:{n}:{i}"));
                }
            }
            _ => {
                for i in 0..700 {
                    let binding = (format!("text-user-{n}-{i}"), format!("org-{}", 8 + i % 4), true);
                    content.bindings.insert(fingerprint("new", n + i), binding);
                }
                let blocked: Vec<_> = content.blocklist.iter().step_by(2).cloned().collect();
                blocked.iter().for_each(|entry| {
                    content.blocklist.remove(entry);
                });
                content.principals.clear();
            }
        }
        let bytes = if version == 4 {
            signed(&content, &stamp(version), &signer)
        } else {
            signed_continuing(&held, &content, &stamp(version), &signer)
        };
        let next = verifier.verify(bytes.clone(), NOW, Some(held.version())).unwrap();
        let delta = between(&held, &next);
        if version == 4 {
            let replaced: Vec<Section> = delta.steps[0]
                .edits
                .iter()
                .filter(|e| matches!(e, SectionEdit::Replaced { .. }))
                .map(SectionEdit::section)
                .collect();
            assert!(replaced.contains(&Section::Strings) && replaced.contains(&Section::Orgs), "{replaced:?}");
        }
        held = apply_both(&verifier, &held, &delta.encode(), NOW).unwrap();
        assert_eq!(held.as_bytes(), &bytes[..], "version {version}");
        steps.push(delta);
    }
    let whole = apply_both(&verifier, &first, &chain(&steps).unwrap().encode(), NOW).unwrap();
    assert_eq!(whole.as_bytes(), held.as_bytes());
    assert_ne!(whole.binding_count(), first.binding_count());
}

/// In place, a result that fits the held buffer's room is built in it; one that does not gets
/// a buffer with an eighth more room than it needs; bytes another view shares are left alone
/// and the result built beside them.
#[test]
fn in_place_reuses_the_held_buffer_grows_it_with_room_and_leaves_shared_bytes_alone() {
    let signer = TestSigner::p256(29);
    let verifier = verifier(&[&signer]);
    let content = bulk_content(3_000);
    let held = verifier.verify(signed(&content, &stamp(1), &signer), NOW, None).unwrap();
    let mut revoked = content.clone();
    let gone = *revoked.bindings.keys().nth(1_234).unwrap();
    revoked.bindings.remove(&gone);
    let two = signed_continuing(&held, &revoked, &stamp(2), &signer);
    let revoke = between(&held, &verifier.verify(two.clone(), NOW, Some(1)).unwrap()).encode();

    // Exactly as long as its bytes: a revoke (one record fewer) still fits.
    let exact = verifier.verify(held.as_bytes().to_vec().into_boxed_slice().into_vec(), NOW, None).unwrap();
    let (at, capacity) = (exact.as_bytes().as_ptr(), exact.shared_bytes().capacity());
    assert_eq!(capacity, exact.as_bytes().len());
    let applied = verifier.apply_delta_in_place(exact, &revoke, NOW).unwrap();
    assert_eq!(applied.as_bytes(), &two[..]);
    assert_eq!(applied.as_bytes().as_ptr(), at, "the revoke moved the records after one binding");
    assert_eq!(applied.card_binding(&Fingerprint(gone)), None);

    // Growing past its capacity: one reallocation, with room for the next.
    let mut grown = revoked.clone();
    grown.bindings.insert(fingerprint("grown", 1), ("01HZ0000000000000000000001".into(), "org-1".into(), true));
    grown.bindings.insert(gone, content.bindings[&gone].clone());
    let three = signed_continuing(&applied, &grown, &stamp(3), &signer);
    let grow = between(&applied, &verifier.verify(three.clone(), NOW, Some(2)).unwrap()).encode();
    let applied = verifier.apply_delta_in_place(applied, &grow, NOW).unwrap();
    assert_eq!(applied.as_bytes(), &three[..]);
    assert!(applied.shared_bytes().capacity() >= three.len() + three.len() / 8);

    // Shared: the other view's bytes stay as they are.
    let mut again = grown.clone();
    again.bindings.remove(&gone);
    let four = signed_continuing(&applied, &again, &stamp(4), &signer);
    let shrink = between(&applied, &verifier.verify(four.clone(), NOW, Some(3)).unwrap()).encode();
    let other = applied.clone();
    let applied = verifier.apply_delta_in_place(applied, &shrink, NOW).unwrap();
    assert_eq!(applied.as_bytes(), &four[..]);
    assert_eq!(other.as_bytes(), &three[..]);
    assert_ne!(applied.as_bytes().as_ptr(), other.as_bytes().as_ptr());
    // Refused while shared: the view comes back, still shared.
    let expired = verifier.apply_delta_in_place(other.clone(), &shrink, NOW + DAY);
    let Err(InPlaceRefusal { error, unapplied: Unapplied::Held(back) }) = expired else {
        panic!("an expired delta applied")
    };
    assert_eq!(error, SnapshotError::Expired { expires_at: NOW + DAY, now: NOW + DAY });
    assert_eq!(back.as_bytes().as_ptr(), other.as_bytes().as_ptr());
}

/// A CRL update that adds 1,000 entries to a CA's 100,000 travels as a delta of about the
/// entries' own size (16 bytes each, plus the touched buckets' share of the header), not as
/// the section.
#[test]
fn a_crl_update_of_a_thousand_entries_is_a_delta_of_about_their_size() {
    let signer = TestSigner::ed25519(31);
    let pinned = verifier(&[&signer]);
    let mut content = small_content();
    let ca = ca_key(b"ca-a");
    for i in 0..100_000u64 {
        content.crl_revoked.insert((ca, format!("{:x}", 0x10_0000 + i)));
    }
    let held = pinned.verify(signed(&content, &stamp(7), &signer), NOW, None).unwrap();
    for i in 0..1_000u64 {
        content.crl_revoked.insert((ca, format!("{:x}", 0x90_0000 + i)));
    }
    let next = signed_continuing(&held, &content, &stamp(8), &signer);
    let next_view = SnapshotView::open_unauthenticated(next.clone()).unwrap();
    let chain = between(&held, &next_view).encode();
    assert!(chain.len() < 32 * 1024, "delta of {} bytes", chain.len());
    assert!(chain.len() > 16 * 1_000, "delta of {} bytes carries the entries", chain.len());
    let applied = apply_both(&pinned, &held, &chain, NOW).unwrap();
    assert_eq!(applied.as_bytes(), &next[..]);
    assert!(applied.is_crl_revoked(&ca, "9003e7"));
    assert!(!held.is_crl_revoked(&ca, "9003e7"));
}
