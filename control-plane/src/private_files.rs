//! Files the control plane writes that hold secrets or every org's data — the SQLite
//! database (token hashes, every binding), the SoftHSM2 token directory, exported snapshots —
//! are created readable by their owner only (files 0600, directories 0700), whatever the
//! process umask says: anyone else on the host who can read them learns what the admin API
//! would refuse them.

use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Mode of a private file.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a private directory.
pub const DIR_MODE: u32 = 0o700;

/// Creates `path` as an empty private file unless it exists; returns whether it created it.
/// An existing file readable by group or others is left as it is (an operator may share it
/// with a backup group on purpose) and logged.
pub fn ensure_file(path: &Path) -> anyhow::Result<bool> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_shared(path);
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Writes `bytes` to a new private file at `path` (replacing one that exists).
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    // Removed first: an existing file keeps its mode when truncated.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    let mut file: File = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Creates `path` and its missing parents; the directories it creates are private, and
/// `path` itself is made private even if it existed.
pub fn create_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(path).with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(())
}

fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "this file is readable by other users; it holds secrets (chmod 600 it)"
            );
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_directories_are_private_whatever_existed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.db");
        assert!(ensure_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        assert!(!ensure_file(&file).unwrap());

        let shared = dir.path().join("shared.snap");
        std::fs::write(&shared, b"old").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&shared, b"new").unwrap();
        assert_eq!(mode(&shared), 0o600);
        assert_eq!(std::fs::read(&shared).unwrap(), b"new");

        let nested = dir.path().join("x/y");
        create_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&dir.path().join("x")), 0o700);
    }
}
