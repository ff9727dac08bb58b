//! The PostgreSQL engine: connecting, migrations, dump, restore and inspection.

pub mod connect;

pub use connect::PgTarget;
pub mod dump;
pub mod fingerprint;
pub mod inspect;
mod lexer;
pub mod migrate;
pub mod narrow;
pub mod restore;
pub mod script;
pub mod tls;
pub mod tools;
pub mod verify;
