//! The MongoDB engine: connecting, migrations, dump, restore and inspection.

pub mod connect;

pub use connect::MongoTarget;
pub mod dump;
pub mod engine;
pub mod inspect;
pub mod manifest;
pub mod mask_schema;
pub mod metadata;
pub mod migrate;
pub mod namespace;
pub mod restore;
pub mod restore_mark;
pub mod verify;
