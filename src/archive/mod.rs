//! The archive: one tar file per backup, self-verifying (see docs/archive-format.md).
