//! The PostgreSQL engine: connecting, migrations, dump, restore and inspection.

pub mod connect;

pub use connect::PgTarget;
mod column_order;
pub mod data_only;
pub mod dump;
pub mod engine;
pub mod fingerprint;
pub mod inspect;
pub mod large_objects;
mod lexer;
pub mod mask_schema;
pub mod migrate;
pub mod narrow;
pub mod restore;
mod schema_objects;
pub mod script;
pub mod tls;
pub mod tools;
pub mod verify;
