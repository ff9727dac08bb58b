//! The MongoDB engine: connecting, migrations, dump, restore and inspection.

pub mod connect;

pub use connect::MongoTarget;
pub mod migrate;
