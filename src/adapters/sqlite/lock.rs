//! One daemon per SQLite store: an exclusive lock on a file beside it
//! (`purser.db.lock`), held for the life of the process and released by the
//! kernel when it dies, however it dies. The file keeps who holds it (pid,
//! host, since when), so that a second daemon names the first, and so that a
//! store that vanished is told from one that never was.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock, held while this value lives.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    /// What the lock file said before this process took it: who ran on
    /// this store last, if anyone did.
    pub previous: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the store {store} is in use by another purser ({holder}); one daemon per SQLite store (several replicas need PostgreSQL)"
    )]
    Held { store: String, holder: String },
    #[error("cannot lock the store {store} ({lock}): {error}")]
    Io {
        store: String,
        lock: String,
        error: std::io::Error,
    },
}

/// The lock file for `store`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl StoreLock {
    /// Takes the lock on `store` for this process, or says who holds it.
    pub fn acquire(store: &Path, started: &str) -> Result<StoreLock, LockError> {
        let lock = lock_path(store);
        let io = |error| LockError::Io {
            store: store.display().to_string(),
            lock: lock.display().to_string(),
            error,
        };
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io)?;
        let mut said = String::new();
        // Unreadable text is no holder to name; the lock itself decides.
        let _ = file.read_to_string(&mut said);
        let said = said.trim().to_owned();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    store: store.display().to_string(),
                    holder: if said.is_empty() {
                        "it has not said who it is yet".to_owned()
                    } else {
                        said
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = format!(
            "pid {} on {}, since {started}",
            std::process::id(),
            crate::host::name()
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(me.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StoreLock {
            _file: file,
            previous: (!said.is_empty()).then_some(said),
        })
    }
}

/// Who holds the lock on `store` now (`None`: no daemon runs on it),
/// without taking it or writing anything.
pub fn holder(store: &Path) -> Result<Option<String>, LockError> {
    let lock = lock_path(store);
    let io = |error| LockError::Io {
        store: store.display().to_string(),
        lock: lock.display().to_string(),
        error,
    };
    let mut file = match File::open(&lock) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut said = String::new();
    let _ = file.read_to_string(&mut said);
    match file.try_lock_shared() {
        // Free: nobody runs; the file says who ran last.
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => Ok(Some(said.trim().to_owned())),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("p.db");
        let first = StoreLock::acquire(&store, "2026-12-01T00:00:00Z").unwrap();
        assert_eq!(first.previous, None, "never ran here");
        let err = StoreLock::acquire(&store, "later").unwrap_err().to_string();
        assert!(err.contains("p.db is in use by another purser"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("since 2026-12-01T00:00:00Z"), "{err}");
        assert!(
            holder(&store)
                .unwrap()
                .is_some_and(|h| h.contains("since 2026-12-01T00:00:00Z"))
        );
        drop(first);
        assert_eq!(holder(&store).unwrap(), None);
        // Released (as a dead process's is), it is taken again, and says
        // who ran before.
        let again = StoreLock::acquire(&store, "2026-12-02T00:00:00Z").unwrap();
        assert!(
            again
                .previous
                .as_deref()
                .is_some_and(|p| p.contains("since 2026-12-01T00:00:00Z")),
            "{:?}",
            again.previous
        );
    }
}
