//! Engine-neutral migrations: discovering files, comparing them with history, planning, and the
//! one apply/revert loop both engines share.
//!
//! Engines implement [`MigrationEngine`] (history, lock, apply one, revert one); everything that
//! decides *what* runs lives here, so PostgreSQL and MongoDB cannot drift apart in behaviour.

pub mod discover;
pub mod lint;
pub mod model;
pub mod plan;
pub mod repeatable;
pub mod roundtrip;
pub mod runner;
pub mod status;

pub use discover::{discover, next_version, Layout, MigrationSource};
pub use model::{AppliedMigration, AppliedState, Migration, RunInfo};
pub use plan::{plan_down, plan_up};
pub use repeatable::{AppliedRepeatable, Repeatable};
pub use runner::{DirtyResolution, MigrationEngine, RepairAction, RunReport, StepOutcome};
pub use status::{compare, StatusEntry, StatusKind};
