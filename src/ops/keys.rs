//! Encryption keys from flags, environment and `[encryption]`: who a backup is encrypted to,
//! and what opens an encrypted archive. Flags (and their variables) win over the config file.

use std::path::PathBuf;
use std::sync::Arc;

use crate::archive::crypt::{self, RecipientKey, Sealer, Unlock};
use crate::config::Settings;
use crate::error::{Error, Result};

/// Who a backup is encrypted to: `--recipient`, `--recipients-file`, `--passphrase-file`.
#[derive(Debug, Clone, Default)]
pub struct SealKeys {
    pub recipients: Vec<String>,
    pub recipients_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
}

/// What opens an encrypted archive: `--identity` or `--passphrase-file`.
#[derive(Debug, Clone, Default)]
pub struct UnlockKeys {
    pub identity: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
}

/// The sealer a backup encrypts with, or `None` for an unencrypted archive.
pub fn sealer(args: &SealKeys, settings: &Settings) -> Result<Option<Arc<Sealer>>> {
    let mut recipients = Vec::new();
    for text in &args.recipients {
        recipients.push(RecipientKey::parse(text, &format!("--recipient {text}"))?);
    }
    if let Some(path) = &args.recipients_file {
        recipients.extend(crypt::read_recipients_file(path)?);
    }
    let config = &settings.encryption;
    if recipients.is_empty() && args.passphrase_file.is_none() {
        for text in &config.recipients {
            recipients.push(RecipientKey::parse(
                text,
                &format!("[encryption] recipients entry {text:?}"),
            )?);
        }
        if let Some(path) = &config.recipients_file {
            recipients.extend(crypt::read_recipients_file(path)?);
        }
    }
    let passphrase_file = args.passphrase_file.as_ref().or(if recipients.is_empty() {
        config.passphrase_file.as_ref()
    } else {
        None
    });
    let sealer =
        match (recipients.is_empty(), passphrase_file) {
            (true, None) => return Ok(None),
            (false, None) => Sealer::to_recipients(recipients)?,
            (true, Some(path)) => Sealer::with_passphrase(crypt::read_passphrase_file(path)?)?,
            (false, Some(_)) => return Err(Error::Usage(
                "--passphrase-file and --recipient/--recipients-file both given: an archive is \
                 encrypted either to recipients or with a passphrase; choose one"
                    .into(),
            )),
        };
    Ok(Some(Arc::new(sealer)))
}

/// What opens an encrypted archive: `--identity` / `--passphrase-file` (or their variables),
/// else `[encryption] identity_file` / `passphrase_file`. `None` when nothing is configured.
pub fn unlock(keys: &UnlockKeys, settings: &Settings) -> Result<Option<Unlock>> {
    let config = &settings.encryption;
    let (identity, passphrase) = if keys.identity.is_some() || keys.passphrase_file.is_some() {
        (keys.identity.clone(), keys.passphrase_file.clone())
    } else {
        (config.identity_file.clone(), config.passphrase_file.clone())
    };
    match (identity, passphrase) {
        (Some(_), Some(_)) => Err(Error::Usage(
            "--identity and --passphrase-file both given: pass the one the archive was made \
             with"
                .into(),
        )),
        (Some(path), None) => Ok(Some(Unlock::IdentityFile(path))),
        (None, Some(path)) => Ok(Some(Unlock::Passphrase(crypt::read_passphrase_file(
            &path,
        )?))),
        (None, None) => Ok(None),
    }
}
