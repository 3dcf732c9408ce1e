//! Files that hold secrets (node and client keys, the matching key ring,
//! the audit signing key): created readable by their owner only, and
//! refused when group or others can read them — a key other local users
//! can read lets them impersonate the agency or compute its tokens.

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
}
