//! The PostgreSQL engine: connecting, migrations, dump, restore and inspection.

pub mod connect;

pub use connect::PgTarget;
pub mod migrate;
