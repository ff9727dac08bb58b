//! dbkeeper: versioned migrations, self-verifying backups and proven restores for PostgreSQL and
//! MongoDB.
//!
//! The crate keeps four kinds of code apart:
//! - [`ops`]: one function per verb (backup, restore, verify, list, prune, ping, migrate ...),
//!   typed options in, typed report out; the binary's CLI (`src/main.rs`, `src/cli/`) only
//!   parses flags into them and renders what they return;
//! - [`engine`]: the capability traits every engine implements and the one registry of engines;
//! - one module per engine, [`postgres`] and [`mongo`], implementing those traits;
//! - a database-free core: [`migrate`] (discovery, status, planning, the one apply/revert loop),
//!   [`archive`] (format, manifest, checksums, the one writer pipeline), [`storage`], [`mask`],
//!   [`config`], [`redact`].

pub mod archive;
pub mod config;
pub mod dirlock;
pub mod engine;
pub mod error;
pub mod faultpoint;
pub mod mask;
pub mod migrate;
pub mod mongo;
pub mod ops;
pub mod postgres;
pub mod private_fs;
pub mod progress;
pub mod redact;
pub mod retention;
pub mod storage;
pub mod verify;
pub mod wait;

pub use error::{Engine, Error, ExitCode, Result};
