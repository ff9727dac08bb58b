//! The masking key and the keyed primitives every transform is built from.
//!
//! The secret (a key file or `DBKEEPER_MASK_KEY`) is stretched once with SHA-256 into a 128-bit
//! SipHash-2-4 key; every masked value is then derived from SipHash-2-4's 128-bit output over a
//! domain tag and the original bytes. SipHash is a keyed pseudo-random function: without the key
//! the outputs say nothing about the inputs, with the same key they are the same in every run,
//! table, collection and engine.

use std::hash::Hasher;

use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher24};

/// Shortest accepted secret, in bytes: shorter ones can be guessed.
pub const MIN_SECRET_BYTES: usize = 16;

/// The derived key. Never printed: `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MaskKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(<redacted>)")
    }
}

impl MaskKey {
    /// Derives the key from a secret (surrounding whitespace, such as a key file's final
    /// newline, is not part of it). `None` when the secret is shorter than
    /// [`MIN_SECRET_BYTES`].
    pub fn from_secret(secret: &[u8]) -> Option<MaskKey> {
        let secret = secret.trim_ascii();
        if secret.len() < MIN_SECRET_BYTES {
            return None;
        }
        let digest = Sha256::new()
            .chain_update(b"dbkeeper-mask-v1\0")
            .chain_update(secret)
            .finalize();
        let word = |i: usize| u64::from_le_bytes(digest[i..i + 8].try_into().expect("8 bytes"));
        Some(MaskKey {
            k0: word(0),
            k1: word(8),
        })
    }

    /// The keyed 128-bit hash of `input` under `domain` (a tag that keeps, say, the e-mail and
    /// the hash of one value unrelated).
    pub fn prf(&self, domain: &[u8], input: &[u8]) -> u128 {
        let mut hasher = SipHasher24::new_with_keys(self.k0, self.k1);
        hasher.write(&(domain.len() as u64).to_le_bytes());
        hasher.write(domain);
        hasher.write(input);
        hasher.finish128().as_u128()
    }

    /// A keyed permutation of `[0, 2^bits)` (`bits` even, 2..=64): a six-round Feistel
    /// network whose round function is [`MaskKey::prf`]. A permutation, so distinct inputs
    /// always give distinct outputs.
    fn permute(&self, value: u64, bits: u32) -> u64 {
        let half = bits / 2;
        let mask = u64::MAX >> (64 - half);
        let (mut left, mut right) = (value >> half, value & mask);
        for round in 0u8..6 {
            let f = self.prf(&[b'F', bits as u8, round], &right.to_le_bytes()) as u64 & mask;
            (left, right) = (right, left ^ f);
        }
        (left << half) | right
    }

    /// A keyed permutation of the signed integers of `bits` width (16, 32 or 64) that keeps
    /// the sign and zero: positive values map to positive values (so `CHECK (id > 0)` still
    /// holds), negative to negative. Cycle walking restricts the Feistel permutation to the
    /// positive range, which keeps it a permutation there.
    pub fn permute_signed(&self, value: i64, bits: u32) -> i64 {
        let max = (1u64 << (bits - 1)) - 1;
        let magnitude = value.unsigned_abs();
        if value == 0 || magnitude > max {
            // Zero, and the one value without a positive counterpart (i64::MIN and friends).
            return value;
        }
        let mut x = magnitude;
        loop {
            x = self.permute(x, bits);
            if (1..=max).contains(&x) {
                break;
            }
        }
        if value < 0 {
            -(x as i64)
        } else {
            x as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> MaskKey {
        MaskKey::from_secret(s.as_bytes()).unwrap()
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_key() {
        assert!(MaskKey::from_secret(b"  short \n").is_none());
        let k = key("0123456789abcdef-secret");
        assert_eq!(format!("{k:?}"), "MaskKey(<redacted>)");
        // A key file's trailing newline is not part of the secret.
        let same = key("0123456789abcdef-secret\n");
        assert_eq!(k.prf(b"d", b"x"), same.prf(b"d", b"x"));
    }

    #[test]
    fn permutations_are_bijective_keep_sign_and_depend_on_the_key() {
        let a = key("first key, long enough");
        let b = key("second key, long enough");
        let mut seen = std::collections::HashSet::new();
        for v in -5000i64..5000 {
            let m = a.permute_signed(v, 16);
            assert_eq!(m.signum(), v.signum(), "{v} -> {m}");
            assert!(m.abs() <= i16::MAX as i64);
            assert!(seen.insert(m), "{v} collides");
        }
        assert_eq!(a.permute_signed(7, 32), a.permute_signed(7, 32));
        assert_ne!(a.permute_signed(7, 32), b.permute_signed(7, 32));
        assert_ne!(a.permute_signed(7, 64), 7);
        assert_eq!(a.permute_signed(i64::MIN, 64), i64::MIN);
        assert!(a.permute_signed(i32::MAX as i64, 32) <= i32::MAX as i64);
    }
}
