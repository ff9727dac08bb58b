//! dbkeeper: versioned migrations, self-verifying backups and proven restores for PostgreSQL and
//! MongoDB.
//!
//! The crate keeps three kinds of code apart:
//! - a database-free core: [`migrate`] (discovery, status, planning, the one apply/revert loop),
//!   [`archive`] (format, manifest, checksums), [`config`], [`redact`];
//! - one module per engine, [`postgres`] and [`mongo`], implementing the core's small traits;
//! - the CLI, which lives in the binary (`src/main.rs`, `src/cli/`).

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
