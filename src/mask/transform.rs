//! The transforms a rules file can name, and what each does to one value.
//!
//! Every transform works on the value's meaning, not its encoding: a text value is hashed as its
//! UTF-8 bytes whether it came from a COPY line (unescaped first) or a BSON string, and an
//! integer as its number. So the same person's e-mail masks to the same address in PostgreSQL
//! and MongoDB.

use std::fmt;

use super::key::MaskKey;

/// What a rule does to a column or field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transform {
    /// Keyed and of the same type: text becomes 20 hex digits, an integer another integer of
    /// the same width and sign (a permutation: distinct stays distinct), a uuid another uuid.
    Hash,
    /// A valid-looking, distinct address at example.com.
    Email,
    /// A "First Last" name (not unique: use `hash` on a uniquely indexed column).
    Name,
    /// A `+99` number with ten digits.
    Phone,
    /// SQL NULL; in MongoDB the field is removed.
    Null,
    /// Left as it is (declares a personal-looking column safe).
    Keep,
    /// This text, for every value.
    Constant(String),
}

impl Transform {
    /// Parses a rule's right-hand side.
    pub fn parse(text: &str) -> Result<Transform, String> {
        Ok(match text {
            "hash" => Transform::Hash,
            "email" => Transform::Email,
            "name" => Transform::Name,
            "phone" => Transform::Phone,
            "null" => Transform::Null,
            "keep" => Transform::Keep,
            _ => match text.strip_prefix("constant:") {
                Some(value) => Transform::Constant(value.to_string()),
                None => {
                    return Err(format!(
                        "unknown transform {text:?}; use hash, email, name, phone, null, keep \
                         or constant:TEXT"
                    ))
                }
            },
        })
    }

    /// Whether the rule changes anything (everything but `keep`).
    pub fn masks(&self) -> bool {
        *self != Transform::Keep
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::Hash => f.write_str("hash"),
            Transform::Email => f.write_str("email"),
            Transform::Name => f.write_str("name"),
            Transform::Phone => f.write_str("phone"),
            Transform::Null => f.write_str("null"),
            Transform::Keep => f.write_str("keep"),
            // The constant itself is not secret, but reports only need the kind.
            Transform::Constant(_) => f.write_str("constant"),
        }
    }
}

const FIRST_NAMES: [&str; 32] = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Barbara",
    "Dennis",
    "Frances",
    "Ken",
    "Margaret",
    "Edsger",
    "Radia",
    "Donald",
    "Hedy",
    "Claude",
    "Katherine",
    "John",
    "Sophie",
    "Tim",
    "Joan",
    "Niklaus",
    "Mary",
    "Bjarne",
    "Shafi",
    "Guido",
    "Evelyn",
    "Leslie",
    "Jean",
    "Robin",
    "Annie",
    "Whitfield",
    "Adele",
    "Butler",
];

const LAST_NAMES: [&str; 32] = [
    "Archer", "Baker", "Carver", "Dalton", "Ellis", "Fisher", "Garner", "Hale", "Irving", "Jarvis",
    "Keller", "Lowell", "Mercer", "Nolan", "Oakley", "Porter", "Quinn", "Rowe", "Sawyer", "Tanner",
    "Upton", "Vance", "Walker", "Xavier", "Young", "Zeller", "Abbott", "Brooks", "Chandler",
    "Dunn", "Easton", "Foster",
];

/// The masked form of a text value (`hash`, `email`, `name`, `phone`); `None` for the other
/// transforms, which do not depend on the value.
pub fn mask_text(key: &MaskKey, transform: &Transform, value: &[u8]) -> Option<String> {
    Some(match transform {
        Transform::Hash => format!("{:020x}", key.prf(b"hash", value) >> 48),
        Transform::Email => {
            let h = key.prf(b"email", value);
            let (first, last) = pick_name(h);
            format!(
                "{}.{}.{:016x}@example.com",
                first.to_ascii_lowercase(),
                last.to_ascii_lowercase(),
                (h >> 64) as u64
            )
        }
        Transform::Name => {
            let (first, last) = pick_name(key.prf(b"name", value));
            format!("{first} {last}")
        }
        Transform::Phone => format!(
            "+99{:010}",
            (key.prf(b"phone", value) % 10_000_000_000) as u64
        ),
        Transform::Null | Transform::Keep | Transform::Constant(_) => return None,
    })
}

fn pick_name(h: u128) -> (&'static str, &'static str) {
    (
        FIRST_NAMES[(h & 31) as usize],
        LAST_NAMES[((h >> 5) & 31) as usize],
    )
}

/// The keyed uuid for a uuid's canonical text (a version 4 uuid, 122 keyed bits).
pub fn mask_uuid(key: &MaskKey, canonical: &[u8]) -> String {
    let h = key.prf(b"uuid", &canonical.to_ascii_lowercase());
    let h = (h & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_parse_and_reject_unknown_names() {
        assert_eq!(Transform::parse("email"), Ok(Transform::Email));
        assert_eq!(
            Transform::parse("constant:n/a"),
            Ok(Transform::Constant("n/a".into()))
        );
        let err = Transform::parse("shuffle").unwrap_err();
        assert!(
            err.contains("\"shuffle\"") && err.contains("constant:TEXT"),
            "{err}"
        );
    }

    #[test]
    fn text_outputs_are_keyed_deterministic_and_well_formed() {
        let k1 = MaskKey::from_secret(b"a test key that is long").unwrap();
        let k2 = MaskKey::from_secret(b"another key, also long").unwrap();
        let email = mask_text(&k1, &Transform::Email, b"ada@example.org").unwrap();
        assert_eq!(
            Some(email.clone()),
            mask_text(&k1, &Transform::Email, b"ada@example.org")
        );
        assert_ne!(
            Some(email.clone()),
            mask_text(&k2, &Transform::Email, b"ada@example.org")
        );
        let (local, domain) = email.split_once('@').unwrap();
        assert!(
            !local.is_empty() && domain == "example.com" && !email.contains(char::is_whitespace)
        );
        let phone = mask_text(&k1, &Transform::Phone, b"+44 20 7946 0000").unwrap();
        assert!(
            phone.len() == 13 && phone[1..].bytes().all(|b| b.is_ascii_digit()),
            "{phone}"
        );
        let hash = mask_text(&k1, &Transform::Hash, b"x").unwrap();
        assert_eq!(hash.len(), 20);
        let uuid = mask_uuid(&k1, b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11");
        assert_eq!(
            uuid,
            mask_uuid(&k1, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
    }

    #[test]
    fn distinct_inputs_give_distinct_emails_and_hashes() {
        let k = MaskKey::from_secret(b"a test key that is long").unwrap();
        let mut emails = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for i in 0..20_000 {
            let v = format!("user{i}@corp.example");
            assert!(emails.insert(mask_text(&k, &Transform::Email, v.as_bytes()).unwrap()));
            assert!(hashes.insert(mask_text(&k, &Transform::Hash, v.as_bytes()).unwrap()));
        }
    }
}
