//! ES256 (ECDSA over P-256 with SHA-256) verification with precomputed tables.
//!
//! A verification computes `u1·G + u2·Q` for the public generator `G` and the issuer's public
//! key `Q`, after inverting `s`. The `p256` crate does this with two constant-time scalar
//! multiplications (512 doublings, 128 additions, a scan of a 16-entry table per window) and a
//! constant-time exponentiation for the inverse. Nothing in a verification is secret, so this
//! module trades constant time for speed and memory for doublings:
//!
//! - fixed-base tables: for a point `P` and a window width `w`, every `d·2^(w·i)·P` for
//!   `d` in 1..=2^(w-1), so `k·P` is one addition per non-zero signed digit of `k` and no
//!   doubling. `G` has 7-bit windows (about 37 additions, a 230 KB table built once per
//!   process), a key 5-bit windows (about 52 additions, 80 KB built the first time the key
//!   verifies a token). The points stay projective: `p256` 0.13 has no batch inversion, and its
//!   complete addition costs one multiplication more for a projective point than an affine one;
//! - `s⁻¹ mod n` by the binary extended Euclidean algorithm, about a tenth of the
//!   exponentiation's cost inside the VM.
//!
//! The answer is the `p256` crate's (`ecdsa` 0.16 `verify_prehashed`): `r` and `s` in
//! `[1, n)`, `z` the SHA-256 of the message reduced modulo `n`, the point at infinity refused,
//! and `x(R) mod n == r`. The unit tests hold the two to the same verdict on valid, damaged and
//! mismatched signatures.

use p256::elliptic_curve::group::Group as _;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::PrimeField as _;
use p256::{ProjectivePoint, Scalar, U256};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

/// Window width of the generator's table and of a key's.
const GENERATOR_WINDOW: u32 = 7;
const KEY_WINDOW: u32 = 5;

/// Every `d·2^(w·i)·P` for one point `P`, `d` in 1..=2^(w-1).
pub struct FixedBaseTable {
    width: u32,
    points: Vec<ProjectivePoint>,
}

impl std::fmt::Debug for FixedBaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FixedBaseTable({}-bit windows, {} points)", self.width, self.points.len())
    }
}

/// Windows of width `w` over a 256-bit scalar, with room for the last digit's carry.
fn windows(width: u32) -> usize {
    (256 + width as usize) / width as usize
}

fn per_window(width: u32) -> usize {
    1 << (width - 1)
}

/// `k` (big-endian) in signed base-`2^w` digits, least significant first: each digit in
/// `-(2^(w-1)-1) ..= 2^(w-1)`, `k = Σ d_i·2^(w·i)`.
fn signed_digits(k: &[u8; 32], width: u32) -> Vec<i32> {
    let bit = |i: usize| -> u32 { k.get(31 - i / 8).map_or(0, |byte| u32::from((byte >> (i % 8)) & 1)) };
    let half = 1i32 << (width - 1);
    let mut carry = 0i32;
    (0..windows(width))
        .map(|window| {
            let start = window * width as usize;
            let mut value = carry;
            for b in 0..width as usize {
                if start + b < 256 {
                    value += (bit(start + b) << b) as i32;
                }
            }
            if value > half {
                carry = 1;
                value - (1 << width)
            } else {
                carry = 0;
                value
            }
        })
        .collect()
}

impl FixedBaseTable {
    pub fn new(point: &ProjectivePoint, width: u32) -> Self {
        let mut points = Vec::with_capacity(windows(width) * per_window(width));
        let mut base = *point;
        for _ in 0..windows(width) {
            let mut multiple = base;
            points.push(multiple);
            for _ in 1..per_window(width) {
                multiple += base;
                points.push(multiple);
            }
            for _ in 0..width {
                base = base.double();
            }
        }
        FixedBaseTable { width, points }
    }

    /// Adds `k·P` to `sum`, one addition per non-zero digit of `k` (big-endian bytes).
    fn add_multiple(&self, sum: &mut ProjectivePoint, k: &[u8; 32]) {
        let per_window = per_window(self.width);
        for (window, digit) in signed_digits(k, self.width).into_iter().enumerate() {
            if digit == 0 {
                continue;
            }
            let index = window * per_window + digit.unsigned_abs() as usize - 1;
            if let Some(point) = self.points.get(index) {
                if digit > 0 {
                    *sum += point;
                } else {
                    *sum -= point;
                }
            }
        }
    }
}

fn generator_table() -> &'static FixedBaseTable {
    static TABLE: OnceLock<FixedBaseTable> = OnceLock::new();
    TABLE.get_or_init(|| FixedBaseTable::new(&ProjectivePoint::GENERATOR, GENERATOR_WINDOW))
}

/// Builds the generator's table now rather than on the first ES256 token (a few milliseconds
/// inside the VM): for a caller with a moment to spare, such as configuration time.
pub fn prepare() {
    generator_table();
}

/// A P-256 verifying key whose table is built the first time it verifies.
#[derive(Debug, Clone)]
pub struct Es256Key {
    key: p256::ecdsa::VerifyingKey,
    table: OnceLock<Arc<FixedBaseTable>>,
}

impl Es256Key {
    pub fn new(key: p256::ecdsa::VerifyingKey) -> Self {
        Es256Key { key, table: OnceLock::new() }
    }

    fn table(&self) -> &FixedBaseTable {
        self.table.get_or_init(|| Arc::new(FixedBaseTable::new(&ProjectivePoint::from(*self.key.as_affine()), KEY_WINDOW)))
    }

    /// Whether `signature` (JWS form: 64 bytes, `r || s`) is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = p256::ecdsa::Signature::from_slice(signature) else {
            return false;
        };
        let (r, s) = signature.split_scalars();
        let Some(s_inverse) = invert_scalar_vartime(&s) else {
            return false;
        };
        let z = <Scalar as Reduce<U256>>::reduce_bytes(&Sha256::digest(message));
        let u1 = z * s_inverse;
        let u2 = *r * s_inverse;
        let mut sum = ProjectivePoint::IDENTITY;
        generator_table().add_multiple(&mut sum, &u1.to_bytes().into());
        self.table().add_multiple(&mut sum, &u2.to_bytes().into());
        if bool::from(sum.is_identity()) {
            return false;
        }
        <Scalar as Reduce<U256>>::reduce_bytes(&sum.to_affine().x()) == *r
    }

    /// The `p256` crate's own verification, for comparison.
    pub fn verifies_reference(&self, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| self.key.verify(message, &sig).is_ok())
    }
}

/// 256-bit numbers as four little-endian 64-bit limbs.
type Limbs = [u64; 4];

/// The order of P-256's group, `n`.
const ORDER: Limbs = [0xf3b9_cac2_fc63_2551, 0xbce6_faad_a717_9e84, 0xffff_ffff_ffff_ffff, 0xffff_ffff_0000_0000];

fn limbs_of(bytes: &[u8; 32]) -> Limbs {
    let mut limbs = [0u64; 4];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[32 - 8 * (i + 1)..32 - 8 * i]);
        *limb = u64::from_be_bytes(word);
    }
    limbs
}

fn bytes_of(limbs: &Limbs) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, limb) in limbs.iter().enumerate() {
        bytes[32 - 8 * (i + 1)..32 - 8 * i].copy_from_slice(&limb.to_be_bytes());
    }
    bytes
}

fn is_even(x: &Limbs) -> bool {
    x[0] & 1 == 0
}

/// `x >> 1`, with `top` shifted in as the new most significant bit.
fn half(x: &Limbs, top: bool) -> Limbs {
    [
        (x[0] >> 1) | (x[1] << 63),
        (x[1] >> 1) | (x[2] << 63),
        (x[2] >> 1) | (x[3] << 63),
        (x[3] >> 1) | (u64::from(top) << 63),
    ]
}

/// `x + y` and the carry out.
fn add(x: &Limbs, y: &Limbs) -> (Limbs, bool) {
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (sum, c1) = x[i].overflowing_add(y[i]);
        let (sum, c2) = sum.overflowing_add(u64::from(carry));
        out[i] = sum;
        carry = c1 || c2;
    }
    (out, carry)
}

/// `x - y` and the borrow out.
fn sub(x: &Limbs, y: &Limbs) -> (Limbs, bool) {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (diff, b1) = x[i].overflowing_sub(y[i]);
        let (diff, b2) = diff.overflowing_sub(u64::from(borrow));
        out[i] = diff;
        borrow = b1 || b2;
    }
    (out, borrow)
}

fn at_least(x: &Limbs, y: &Limbs) -> bool {
    !sub(x, y).1
}

/// `x / 2 mod n` for `x < n`.
fn half_mod(x: &Limbs) -> Limbs {
    if is_even(x) {
        half(x, false)
    } else {
        let (sum, carry) = add(x, &ORDER);
        half(&sum, carry)
    }
}

/// `x - y mod n` for `x, y < n`.
fn sub_mod(x: &Limbs, y: &Limbs) -> Limbs {
    let (diff, borrow) = sub(x, y);
    if borrow {
        add(&diff, &ORDER).0
    } else {
        diff
    }
}

/// `s⁻¹ mod n` by the binary extended Euclidean algorithm: variable time, which is fine for
/// the public `s` of a signature. `None` only if the loop ran past its bound, which a
/// non-zero `s` below the prime `n` never does.
fn invert_scalar_vartime(s: &Scalar) -> Option<Scalar> {
    const ONE: Limbs = [1, 0, 0, 0];
    let (mut u, mut v) = (limbs_of(&s.to_bytes().into()), ORDER);
    let (mut x1, mut x2) = (ONE, [0u64; 4]);
    // Each round removes at least one bit from u or v: 512 rounds of halving and 512 of
    // subtraction bound the loop.
    for _ in 0..1024 {
        if u == ONE {
            return Scalar::from_repr(bytes_of(&x1).into()).into();
        }
        if v == ONE {
            return Scalar::from_repr(bytes_of(&x2).into()).into();
        }
        if u == [0; 4] || v == [0; 4] {
            return None;
        }
        while is_even(&u) {
            u = half(&u, false);
            x1 = half_mod(&x1);
        }
        while is_even(&v) {
            v = half(&v, false);
            x2 = half_mod(&x2);
        }
        if at_least(&u, &v) {
            u = sub(&u, &v).0;
            x1 = sub_mod(&x1, &x2);
        } else {
            v = sub(&v, &u).0;
            x2 = sub_mod(&x2, &x1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{Signature, SigningKey};

    fn signing_key(seed: u8) -> SigningKey {
        let mut bytes = [seed; 32];
        bytes[0] = 1;
        SigningKey::from_bytes(&bytes.into()).unwrap()
    }

    /// Same verdict as the `p256` crate on valid signatures, on every kind of damage, on
    /// another key's signature, and on the high-`s` twin of a valid signature.
    #[test]
    fn verdicts_agree_with_the_p256_crate() {
        let (mut valid, mut refused) = (0, 0);
        let mut damage = crate::damage::Damage::new(0x9e37_79b9_7f4a_7c15);
        let mut next = || damage.next();
        for seed in 1..=24u8 {
            let signer = signing_key(seed);
            let key = Es256Key::new(*signer.verifying_key());
            let other = Es256Key::new(*signing_key(seed.wrapping_add(100)).verifying_key());
            for m in 0..6u8 {
                let message = vec![m; 10 + usize::from(m) * 17];
                let signature: Signature = signer.sign(&message);
                let bytes = signature.to_bytes();
                let mut cases = vec![(bytes.to_vec(), message.clone())];
                // High-s twin: (r, n - s) verifies for ECDSA as well, and JWS accepts both
                // forms (see `jwks`): both must verify here.
                let (r, s) = signature.split_scalars();
                let twin = Signature::from_scalars(*r, -*s).unwrap();
                assert!(key.verifies(&message, &bytes) && key.verifies(&message, &twin.to_bytes()), "seed {seed}: both S");
                cases.push((twin.to_bytes().to_vec(), message.clone()));
                for _ in 0..6 {
                    let mut damaged = bytes.to_vec();
                    let at = (next() as usize) % damaged.len();
                    damaged[at] ^= 1 << (next() % 8);
                    cases.push((damaged, message.clone()));
                }
                let mut other_message = message.clone();
                other_message.push(0);
                cases.push((bytes.to_vec(), other_message));
                cases.push((vec![0; 64], message.clone()));
                cases.push((vec![0xff; 64], message.clone()));
                cases.push((bytes[..63].to_vec(), message.clone()));
                for (signature, message) in cases {
                    let ours = key.verifies(&message, &signature);
                    assert_eq!(ours, key.verifies_reference(&message, &signature), "seed {seed}");
                    assert_eq!(other.verifies(&message, &signature), other.verifies_reference(&message, &signature));
                    if ours {
                        valid += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        assert!(valid >= 24 * 6 * 2 && refused > 1000, "valid {valid}, refused {refused}");
    }

    #[test]
    fn tables_hold_the_multiples_at_every_width() {
        let point = ProjectivePoint::GENERATOR * Scalar::from(0x1234_5678u64);
        let minus_one = -Scalar::ONE;
        let scalars = [
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(2u64),
            Scalar::from(15u64),
            Scalar::from(16u64),
            Scalar::from(17u64),
            Scalar::from(64u64),
            Scalar::from(65u64),
            Scalar::from(255u64),
            Scalar::from(0xdead_beefu64),
            Scalar::from(u64::MAX),
            Scalar::from_repr([0xa5; 32].into()).unwrap(),
            Scalar::from_repr([0x7f; 32].into()).unwrap(),
            minus_one,
        ];
        for width in [4, 5, 7, 8] {
            let table = FixedBaseTable::new(&point, width);
            assert_eq!(table.points.len(), windows(width) * per_window(width));
            for k in scalars {
                let mut sum = ProjectivePoint::IDENTITY;
                table.add_multiple(&mut sum, &k.to_bytes().into());
                assert_eq!(sum.to_affine(), (point * k).to_affine(), "width {width}");
            }
        }
    }

    #[test]
    fn signed_digits_sum_to_the_scalar() {
        for width in [4, 5, 7, 8] {
            for k in [Scalar::from(0x8080u64), -Scalar::ONE, Scalar::from_repr([0xff; 32].into()).unwrap_or(Scalar::ONE)] {
                let digits = signed_digits(&k.to_bytes().into(), width);
                let half = 1i32 << (width - 1);
                assert!(digits.iter().all(|d| *d > -half && *d <= half), "{digits:?}");
                let mut sum = Scalar::ZERO;
                let mut weight = Scalar::ONE;
                let step = Scalar::from(1u64 << width);
                for d in digits {
                    let magnitude = Scalar::from(u64::from(d.unsigned_abs()));
                    sum += if d < 0 { -(magnitude * weight) } else { magnitude * weight };
                    weight *= step;
                }
                assert_eq!(sum, k, "width {width}");
            }
        }
    }

    #[test]
    fn the_binary_inverse_agrees_with_fermat() {
        let mut x = Scalar::from(3u64);
        for i in 0..2000u64 {
            x = x * Scalar::from(0x9e37_79b9_7f4a_7c15u64) + Scalar::from(i);
            if x == Scalar::ZERO {
                continue;
            }
            assert_eq!(invert_scalar_vartime(&x), Some(x.invert().unwrap()), "{i}");
        }
        for edge in [Scalar::ONE, -Scalar::ONE, Scalar::from(2u64), -Scalar::from(2u64)] {
            assert_eq!(invert_scalar_vartime(&edge), Some(edge.invert().unwrap()));
        }
    }
}
