//! Files that hold secrets (node and client keys, the matching key ring,
//! the audit signing key): created readable by their owner only, and
//! refused when group or others can read them — a key other local users
//! can read lets them impersonate the agency or compute its tokens.
//!
//! Case data is held to the same rule: the store and its backups are
//! directories only the owner can enter (0700), and exports, rejected-rows
//! files and uploads are files only the owner can read (0600), whatever
//! the process's umask — names, dates of birth and passport numbers must
//! not be readable by every local user because a unit file forgot `UMask`.
//!
//! - [`check_owner_only`] refuses a key file group or others can read;
//!   [`create_new`] writes a new file, 0600 when it is private.
//! - [`private_dir`]: a directory of case data in use (the store, the
//!   console's uploads): created 0700, made 0700 while it is still empty,
//!   refused with the `chmod` that fixes it once it holds something and is
//!   exposed. [`create_private_dir`] makes a new one (a backup, a migrated
//!   store).
//! - [`create_private`]: a file of case data (an export, a rejected-rows
//!   file, an upload), 0600 even when it existed.

use std::io::Write;
use std::path::Path;

/// Why `path` must not be used as a secret, if group or others can access
/// it; `what` names it in the message ("private key", "key ring").
pub fn check_owner_only(path: &Path, what: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{what} is accessible by group or others (mode {:o}); run chmod 600",
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// Creates `path`, which must not exist, with mode 0600 when `private`
/// (else 0644), writes `contents` and syncs it. An existing file is never
/// overwritten (`ErrorKind::AlreadyExists`).
pub fn create_new(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Creates (or truncates) `path` for writing with mode 0600: a file of
/// case data (an export, a rejected-rows file, an upload). A file that
/// existed keeps its inode, so its mode is set again.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Creates directory `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// A directory of case data, ready to use: created 0700 when missing (or
/// made 0700 while it is still empty: nothing was exposed yet), refused
/// (with the command that fixes it) when it holds something and group or
/// others can access it; `what` names it in the message.
pub fn private_dir(dir: &Path, what: &str) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    if !dir.exists() {
        return create_private_dir(dir).map_err(io);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if mode & 0o077 != 0 && empty {
            return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io);
        }
        if mode & 0o077 != 0 {
            return Err(format!(
                "{}: the {what} is accessible by group or others (mode {:o}) and holds case \
                 data; run chmod 700 {}",
                dir.display(),
                mode & 0o777,
                dir.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = what;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_private_files_pass_the_check_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        create_new(&key, b"secret", true).unwrap();
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(check_owner_only(&key, "key").is_ok());
        assert_eq!(
            create_new(&key, b"again", true).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");

        let public = dir.path().join("cert");
        create_new(&public, b"cert", false).unwrap();
        let err = check_owner_only(&public, "private key").unwrap_err();
        assert!(err.contains("mode 644"), "{err}");
    }

    #[test]
    fn case_data_directories_and_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("a/store");
        private_dir(&store, "store directory").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store), 0o700);
        assert!(private_dir(&store, "store directory").is_ok());
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&store, "store directory").unwrap();
        assert_eq!(mode(&store), 0o700, "an empty directory is made private");
        std::fs::write(store.join("0.jnl"), "victims").unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = private_dir(&store, "store directory").unwrap_err();
        assert!(
            err.contains("mode 755") && err.contains("chmod 700"),
            "{err}"
        );

        let export = dir.path().join("alerts.jsonl");
        std::fs::write(&export, "old").unwrap();
        std::fs::set_permissions(&export, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private(&export).unwrap();
        assert_eq!(mode(&export), 0o600);
    }
}

/// Turns core dumps off for this process, for good (the hard limit too),
/// and marks it not dumpable: a crash of a node or the key service must not
/// write its memory — unwrapped epoch keys, OPRF seeds, case data — to a
/// file other users or a support bundle may read.
pub fn no_core_dumps() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, Resource, Rlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        rustix::process::setrlimit(Resource::Core, none)?;
        rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    }
    Ok(())
}
