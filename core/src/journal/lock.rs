//! One writer per journal directory: an advisory `flock` on `DIR/LOCK`, held for the
//! writer's life and released by the kernel when the process dies (so a `kill -9` never
//! leaves a stale lock behind).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::error::JournalError;

/// The held lock; dropping it (closing the file) releases it.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock without waiting: [`JournalError::Locked`] if a writer (or `repair`)
    /// holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| JournalError::io("open", &path, e))?;
        // SAFETY: `flock` on an fd we own, open for the duration of the call; no memory is
        // passed. The lock belongs to the open file description kept in `DirLock`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(JournalError::Locked(dir.to_owned()));
            }
            return Err(JournalError::io("lock", &path, err));
        }
        Ok(DirLock { _file: file })
    }
}
