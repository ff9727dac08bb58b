//! Encryption envelope: which bytes of an archive are age files, and the keys that open them.
//!
//! In an encrypted archive every member except `HEADER.json`, `MANIFEST.json`, `COMMIT` (and,
//! in passphrase mode, `KEY.age`) is one complete age file (age-encryption.org/v1) of the bytes
//! an unencrypted archive would hold there, so `age -d` opens any member on its own. The tar
//! headers, `MANIFEST.json` (every member's name, size and SHA-256) and `COMMIT` stay in clear:
//! V0 checks integrity without any secret. What the manifest says about the data (row counts,
//! content digests, sequence values, schema fingerprints, index and validator specs) moves
//! into the encrypted member `MANIFEST.json.age` (see docs/archive-format.md).
//!
//! Keys:
//! - recipients (`age1…`, `ssh-ed25519 …`, `ssh-rsa …`): every member is encrypted to all of
//!   them directly, so any one identity opens any member with `age -d -i KEY`;
//! - passphrase: age's passphrase recipient runs scrypt on purpose slowly, so it is used once
//!   per archive: a fresh X25519 *archive key* is generated, `KEY.age` holds its secret
//!   encrypted with the passphrase, and every member is encrypted to its public half. Opening
//!   the archive costs one scrypt; each member then costs one X25519 exchange.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The passphrase-wrapped archive key (passphrase mode only).
pub const KEY_MEMBER: &str = "KEY.age";
/// The full manifest, encrypted like every other member.
pub const SEALED_MANIFEST_MEMBER: &str = "MANIFEST.json.age";

/// What `MANIFEST.json` of an encrypted archive says about its encryption, in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// Always `age`.
    pub scheme: String,
    /// The public keys members are encrypted to, as given (empty in passphrase mode).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Members are encrypted to an archive key that `KEY.age` holds under a passphrase.
    #[serde(default)]
    pub passphrase: bool,
}

/// One public key an archive is encrypted to.
#[derive(Clone)]
pub struct RecipientKey {
    text: String,
    key: RecipientKind,
}

#[derive(Clone)]
enum RecipientKind {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl RecipientKey {
    /// Parses `age1…` or an SSH public key line (`ssh-ed25519 AAAA… comment`, `ssh-rsa …`).
    /// `origin` names where the text came from, for the error.
    pub fn parse(text: &str, origin: &str) -> Result<RecipientKey> {
        let text = text.trim();
        let key = if text.starts_with("age1") {
            age::x25519::Recipient::from_str(text)
                .map(RecipientKind::X25519)
                .map_err(|e| e.to_string())
        } else if text.starts_with("ssh-") {
            age::ssh::Recipient::from_str(text)
                .map(RecipientKind::Ssh)
                .map_err(|e| format!("{e:?}"))
        } else {
            Err(
                "expected an age public key (age1…) or an SSH public key (ssh-ed25519 …, \
                 ssh-rsa …)"
                    .to_string(),
            )
        };
        let key = key.map_err(|why| {
            Error::bad_input(
                origin,
                format!("is not a valid recipient ({why}); generate one with `age-keygen`"),
            )
        })?;
        // The comment of an SSH key line is not part of the key.
        let shown = text
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(RecipientKey { text: shown, key })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn as_dyn(&self) -> &dyn age::Recipient {
        match &self.key {
            RecipientKind::X25519(k) => k,
            RecipientKind::Ssh(k) => k,
        }
    }
}

impl std::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Reads a recipients file: one key per line, `#` comments and blank lines ignored (the format
/// of `age -R`).
pub fn read_recipients_file(path: &Path) -> Result<Vec<RecipientKey>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::bad_input(
            format!("recipients file {}", path.display()),
            format!("cannot be read: {e}"),
        )
    })?;
    let keys = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(i, line)| {
            RecipientKey::parse(
                line,
                &format!("recipients file {}, line {}", path.display(), i + 1),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    if keys.is_empty() {
        return Err(Error::bad_input(
            format!("recipients file {}", path.display()),
            "holds no recipient; add an age1… or ssh-ed25519 … public key per line",
        ));
    }
    Ok(keys)
}

/// Reads a passphrase file: its first line, without the line ending.
pub fn read_passphrase_file(path: &Path) -> Result<SecretString> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::bad_input(
            format!("passphrase file {}", path.display()),
            format!("cannot be read: {e}"),
        )
    })?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(Error::bad_input(
            format!("passphrase file {}", path.display()),
            "is empty; put the passphrase on its first line",
        ));
    }
    Ok(SecretString::from(line.to_string()))
}

/// Encrypts members for one backup.
pub struct Sealer {
    recipients: Vec<RecipientKey>,
    info: EncryptionInfo,
    /// Passphrase mode: the `KEY.age` member to write first.
    key_member: Option<Vec<u8>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("info", &self.info).finish()
    }
}

impl Sealer {
    /// Every member encrypted to all of `recipients`.
    pub fn to_recipients(recipients: Vec<RecipientKey>) -> Result<Sealer> {
        if recipients.is_empty() {
            return Err(Error::Usage(
                "encryption needs at least one recipient".into(),
            ));
        }
        let info = EncryptionInfo {
            scheme: "age".into(),
            recipients: recipients.iter().map(|r| r.text.clone()).collect(),
            passphrase: false,
        };
        Ok(Sealer {
            recipients,
            info,
            key_member: None,
        })
    }

    /// Every member encrypted to a fresh archive key, itself encrypted with `passphrase` (one
    /// scrypt run, here).
    pub fn with_passphrase(passphrase: SecretString) -> Result<Sealer> {
        let archive_key = age::x25519::Identity::generate();
        let public = archive_key.to_public();
        let mut wrapped = Vec::new();
        let mut writer = age::Encryptor::with_user_passphrase(passphrase)
            .wrap_output(&mut wrapped)
            .map_err(|e| Error::io("encrypting the archive key", e))?;
        writer
            .write_all(archive_key.to_string().expose_secret().as_bytes())
            .and_then(|()| writer.finish().map(drop))
            .map_err(|e| Error::io("encrypting the archive key", e))?;
        Ok(Sealer {
            recipients: vec![RecipientKey {
                text: public.to_string(),
                key: RecipientKind::X25519(public),
            }],
            info: EncryptionInfo {
                scheme: "age".into(),
                recipients: Vec::new(),
                passphrase: true,
            },
            key_member: Some(wrapped),
        })
    }

    pub fn info(&self) -> &EncryptionInfo {
        &self.info
    }

    /// `KEY.age`'s bytes in passphrase mode.
    pub fn key_member(&self) -> Option<&[u8]> {
        self.key_member.as_deref()
    }

    /// One complete age file of `plain`.
    pub fn seal(&self, plain: &[u8]) -> std::io::Result<Vec<u8>> {
        let encryptor =
            age::Encryptor::with_recipients(self.recipients.iter().map(RecipientKey::as_dyn))
                .map_err(std::io::Error::other)?;
        // age adds a header (~200 bytes per recipient) and 16 bytes per 64 KiB.
        let mut out = Vec::with_capacity(plain.len() + plain.len() / 4096 + 1024);
        let mut writer = encryptor.wrap_output(&mut out)?;
        writer.write_all(plain)?;
        writer.finish()?;
        Ok(out)
    }
}

/// How the user unlocks an encrypted archive.
pub enum Unlock {
    /// An age identity file (`AGE-SECRET-KEY-1…` lines) or an unencrypted OpenSSH private key.
    IdentityFile(std::path::PathBuf),
    Passphrase(SecretString),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::IdentityFile(p) => write!(f, "IdentityFile({})", p.display()),
            Unlock::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
        }
    }
}

/// Keys that open the members of one archive.
pub struct Keyring {
    keys: Vec<IdentityKind>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} key(s), <redacted>)", self.keys.len())
    }
}

enum IdentityKind {
    X25519(age::x25519::Identity),
    Ssh(age::ssh::Identity),
}

impl IdentityKind {
    fn as_dyn(&self) -> &dyn age::Identity {
        match self {
            IdentityKind::X25519(k) => k,
            IdentityKind::Ssh(k) => k,
        }
    }
}

/// Why a member did not decrypt.
#[derive(Debug)]
pub enum OpenError {
    /// None of the keys is one the member was encrypted to.
    NoMatchingKey,
    /// The member is not an intact age file (damaged, or not encrypted at all).
    Damaged(String),
}

impl Keyring {
    /// Reads an identity file: age identities (`AGE-SECRET-KEY-1…`, one per line, `#`
    /// comments) or one unencrypted OpenSSH private key.
    pub fn from_identity_file(path: &Path) -> Result<Keyring> {
        let what = format!("identity file {}", path.display());
        let bytes = std::fs::read(path)
            .map_err(|e| Error::bad_input(&what, format!("cannot be read: {e}")))?;
        let text = String::from_utf8_lossy(&bytes);
        let malformed = |why: &str| {
            Error::bad_input(
                &what,
                format!(
                    "is not a usable identity ({why}); expected `AGE-SECRET-KEY-1…` lines (from \
                     `age-keygen`) or an unencrypted OpenSSH private key"
                ),
            )
        };
        if text.contains("-----BEGIN") {
            let identity = age::ssh::Identity::from_buffer(BufReader::new(bytes.as_slice()), None)
                .map_err(|_| malformed("unreadable SSH private key"))?;
            return match identity {
                age::ssh::Identity::Unencrypted(_) => Ok(Keyring {
                    keys: vec![IdentityKind::Ssh(identity)],
                }),
                age::ssh::Identity::Encrypted(_) => Err(malformed(
                    "the SSH key is passphrase-protected; use an unprotected copy or an age key",
                )),
                _ => Err(malformed("unsupported SSH key type")),
            };
        }
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Never quote the line: it is (or is close to) a secret key.
            let key = age::x25519::Identity::from_str(line)
                .map_err(|_| malformed(&format!("line {} is not an age secret key", i + 1)))?;
            keys.push(IdentityKind::X25519(key));
        }
        if keys.is_empty() {
            return Err(malformed("it holds no key"));
        }
        Ok(Keyring { keys })
    }

    /// The keyring of a passphrase-mode archive: `KEY.age` decrypted with `passphrase`.
    pub fn from_key_member(key_member: &[u8], passphrase: &SecretString) -> Result<Keyring> {
        let identity = age::scrypt::Identity::new(passphrase.clone());
        let secret = decrypt(key_member, std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| match e {
                OpenError::NoMatchingKey => Error::bad_input(
                    "--passphrase-file",
                    "holds the wrong passphrase for this archive",
                ),
                OpenError::Damaged(why) => {
                    Error::bad_input(format!("archive member {KEY_MEMBER}"), why)
                }
            })?;
        let secret = String::from_utf8(secret).unwrap_or_default();
        let key = age::x25519::Identity::from_str(secret.trim()).map_err(|_| {
            Error::bad_input(
                format!("archive member {KEY_MEMBER}"),
                "does not hold an archive key",
            )
        })?;
        Ok(Keyring {
            keys: vec![IdentityKind::X25519(key)],
        })
    }

    /// Decrypts one age file.
    pub fn open(&self, sealed: &[u8]) -> std::result::Result<Vec<u8>, OpenError> {
        decrypt(sealed, self.keys.iter().map(IdentityKind::as_dyn))
    }
}

fn decrypt<'a>(
    sealed: &[u8],
    identities: impl Iterator<Item = &'a dyn age::Identity>,
) -> std::result::Result<Vec<u8>, OpenError> {
    let decryptor = age::Decryptor::new_buffered(sealed)
        .map_err(|e| OpenError::Damaged(format!("is not an intact age file: {e}")))?;
    let mut reader = decryptor.decrypt(identities).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
            OpenError::NoMatchingKey
        }
        other => OpenError::Damaged(format!("does not decrypt: {other}")),
    })?;
    let mut plain = Vec::with_capacity(sealed.len());
    reader
        .read_to_end(&mut plain)
        .map_err(|e| OpenError::Damaged(format!("does not decrypt: {e}")))?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_members_open_with_the_identity_only() {
        let key = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let recipient = RecipientKey::parse(&key.to_public().to_string(), "test").unwrap();
        let sealer = Sealer::to_recipients(vec![recipient]).unwrap();
        let sealed = sealer.seal(b"secret rows\n").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let ring = Keyring {
            keys: vec![IdentityKind::X25519(key)],
        };
        assert_eq!(ring.open(&sealed).unwrap(), b"secret rows\n");
        let wrong = Keyring {
            keys: vec![IdentityKind::X25519(other)],
        };
        assert!(matches!(wrong.open(&sealed), Err(OpenError::NoMatchingKey)));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(ring.open(&tampered), Err(OpenError::Damaged(_))));
    }

    #[test]
    fn bad_recipients_are_refused_by_name() {
        let err = RecipientKey::parse("age1nope", "--recipient").unwrap_err();
        assert!(err.to_string().contains("--recipient"), "{err}");
        assert!(RecipientKey::parse("hello", "x").is_err());
    }
}
