//! The local backup directory behind the [`super::ArchiveStore`] seam: the catalog's file
//! functions (archives, `.verified.json` stamps) under the same interface as a bucket prefix.

use std::path::{Path, PathBuf};

use super::RunLock;
use crate::archive::catalog::{self, ArchiveSummary, VerificationStamp};
use crate::dirlock::DirLock;
use crate::error::Result;

pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub fn new(dir: PathBuf) -> LocalDir {
        LocalDir { dir }
    }
}

#[async_trait::async_trait]
impl super::ArchiveStore for LocalDir {
    fn display(&self) -> String {
        self.dir.display().to_string()
    }

    async fn list(&self) -> Result<Vec<ArchiveSummary>> {
        let dir = self.dir.clone();
        blocking(move || catalog::list_archives(&dir)).await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        catalog::delete_archive(Path::new(id))
    }

    async fn write_stamp(&self, id: &str, level: &str) -> Result<()> {
        catalog::write_stamp(Path::new(id), level)
    }

    async fn read_stamp(&self, id: &str) -> Option<VerificationStamp> {
        catalog::read_stamp(Path::new(id))
    }

    async fn lock(&self, command: &str) -> Result<RunLock> {
        Ok(RunLock::new(DirLock::acquire(&self.dir, command)?))
    }

    async fn remove_abandoned(&self, current: Option<&str>) -> Result<()> {
        let own_partial = current.map(|id| {
            let mut name = std::ffi::OsString::from(id);
            name.push(crate::archive::PARTIAL_SUFFIX);
            PathBuf::from(name)
        });
        catalog::remove_stale_partials(&self.dir, own_partial.as_deref()).map(|_| ())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        crate::error::Error::io("reading the backup directory", std::io::Error::other(e))
    })?
}
