//! Files and directories only their owner can read: everything dbkeeper writes next to a
//! backup (archives, verification stamps, locks) holds or describes production data.
//!
//! The modes are set explicitly after creation (`fchmod`/`chmod` ignore the umask), so a
//! permissive umask such as 0022 or 0000 cannot leave a copy of production readable by every
//! local user. Directories dbkeeper creates are 0700; directories that already existed are
//! left as their owner set them.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file dbkeeper writes next to a backup.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory dbkeeper creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates `path`, which must not exist, as an empty file with mode 0600.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Writes `bytes` to `path` (replacing it) with mode 0600, through a temporary file and a
/// rename, so a reader never sees half a file.
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let result = create_new(&tmp)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and any missing parents with mode 0700; existing directories are untouched.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)),
        // Another process made it in the meantime: theirs, leave it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_files_and_dirs_are_private_and_existing_dirs_untouched() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), Permissions::from_mode(0o755)).unwrap();
        let dir = root.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(root.path()), 0o755);
        let file = dir.join("x");
        create_new(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(create_new(&file).is_err(), "never overwrites");
        let stamp = dir.join("s.json");
        write_replace(&stamp, b"{}").unwrap();
        write_replace(&stamp, b"{1}").unwrap();
        assert_eq!(mode(&stamp), 0o600);
        assert_eq!(std::fs::read(&stamp).unwrap(), b"{1}");
    }
}
