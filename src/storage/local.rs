//! The local backup directory behind the [`super::ArchiveStore`] seam: the catalog's file
//! functions (archives, `.verified.json` stamps) under the same interface as a bucket prefix.

use std::path::{Path, PathBuf};

use crate::archive::catalog::{self, ArchiveSummary, VerificationStamp};
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
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        crate::error::Error::io("reading the backup directory", std::io::Error::other(e))
    })?
}
