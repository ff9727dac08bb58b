//! A lock file that keeps two backup (or prune) runs out of the same directory.
//!
//! Cron and CI overlap more often than anyone plans: a nightly backup that runs long meets the
//! next one. The second run must stop with a clear message rather than interleave writes or prune
//! an archive the first is about to finish. The lock is a file created with `O_EXCL` holding the
//! owner's pid, host and start time. A lock left by a process that no longer exists on this host
//! is stale and taken over (with a warning); a lock from another host is respected, since we
//! cannot tell whether its owner is alive.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const LOCK_FILE_NAME: &str = ".dbkeeper.lock";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockOwner {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub started_at: String,
}

/// Held while alive; the file is removed on drop (also on error paths: a crashed process leaves
/// a stale lock that the next run takes over).
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock on `dir` for `command` (e.g. "backup"), creating `dir` if needed.
    pub fn acquire(dir: &Path, command: &str) -> Result<DirLock> {
        crate::private_fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(LOCK_FILE_NAME);
        let me = LockOwner::me(command);
        // Two attempts: the second after removing a stale lock.
        for _ in 0..2 {
            match crate::private_fs::create_new(&path) {
                Ok(mut file) => {
                    let text = serde_json::to_string(&me).expect("lock owner serializes");
                    file.write_all(text.as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = read_owner(&path);
                    match owner {
                        Some(owner) if owner.host == me.host && !process_alive(owner.pid) => {
                            tracing::warn!(
                                "taking over stale lock {} left by {} (pid {}, started {}), which is no longer running",
                                path.display(),
                                owner.command,
                                owner.pid,
                                owner.started_at
                            );
                            let _ = std::fs::remove_file(&path);
                        }
                        Some(owner) => {
                            return Err(locked_by(
                                &dir.display().to_string(),
                                &owner,
                                &path.display().to_string(),
                            ))
                        }
                        None => {
                            return Err(Error::Refused(format!(
                                "{} is locked ({} exists but is unreadable or being written). If no dbkeeper run is \
                                 active, delete it",
                                dir.display(),
                                path.display()
                            )))
                        }
                    }
                }
                Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            }
        }
        Err(Error::Refused(format!(
            "could not take the lock {} (another run keeps recreating it)",
            path.display()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The refusal when another run holds a lock, the same for a directory and a bucket prefix.
pub fn locked_by(place: &str, owner: &LockOwner, lock: &str) -> Error {
    Error::Refused(format!(
        "{place} is locked by another dbkeeper run: `{}` (pid {} on {}, started {}). Wait for it \
         to finish; if it is certainly gone, delete {lock}",
        owner.command, owner.pid, owner.host, owner.started_at
    ))
}

impl LockOwner {
    /// This process, running `command`.
    pub fn me(command: &str) -> LockOwner {
        LockOwner {
            pid: std::process::id(),
            host: hostname(),
            command: command.to_string(),
            started_at: chrono::Utc::now().to_rfc3339(),
        }
    }

    /// Whether the owner is certainly gone: a process of this host that no longer exists.
    pub fn is_dead(&self) -> bool {
        self.host == hostname() && !process_alive(self.pid)
    }
}

fn read_owner(path: &Path) -> Option<LockOwner> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Whether a process with this pid exists on this host (Linux: /proc; elsewhere assume alive,
/// which errs on the side of not stealing a lock).
fn process_alive(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true;
    }
    proc_root.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "backup").unwrap();
        let err = DirLock::acquire(dir.path(), "backup").unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Refused);
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert!(!dir.path().join(LOCK_FILE_NAME).exists());
        DirLock::acquire(dir.path(), "backup").unwrap();
    }

    #[test]
    fn stale_lock_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // A child that has exited: its pid is certainly not running any more.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let stale = LockOwner {
            pid: dead_pid,
            host: hostname(),
            command: "backup".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(
            dir.path().join(LOCK_FILE_NAME),
            serde_json::to_string(&stale).unwrap(),
        )
        .unwrap();
        let lock = DirLock::acquire(dir.path(), "backup").unwrap();
        let owner = read_owner(lock.path()).unwrap();
        assert_eq!(owner.pid, std::process::id());
    }

    #[test]
    fn lock_from_another_host_is_respected() {
        let dir = tempfile::tempdir().unwrap();
        let other = LockOwner {
            pid: 1,
            host: "some-other-host".into(),
            command: "backup".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(
            dir.path().join(LOCK_FILE_NAME),
            serde_json::to_string(&other).unwrap(),
        )
        .unwrap();
        let err = DirLock::acquire(dir.path(), "backup").unwrap_err();
        assert!(err.to_string().contains("some-other-host"), "{err}");
    }
}
