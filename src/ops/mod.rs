//! The library's verbs: one function per command, taking typed options and returning a typed
//! report. The CLI (`src/cli/`) parses flags into these options, calls one function, renders
//! the report as text or JSON and maps the exit code; tests and benches call the same
//! functions. Engines are reached only through the registry in [`crate::engine`].

pub mod backup;
pub mod keys;
pub mod list;
pub mod migrate;
pub mod ping;
pub mod prune;
pub mod restore;
pub mod targets;
pub mod verify;
