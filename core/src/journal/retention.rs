//! Retention: which sealed segments to delete. Whole files only, oldest first; the open
//! segment is never deleted. A reader that has a deleted segment mapped keeps reading it
//! (the file lives until its last map goes).

use std::collections::VecDeque;
use std::path::Path;

use super::config::Retention;
use super::error::JournalError;
use super::segment;
use super::writer::Sealed;

/// Deletes from the front of `sealed` while the total size (with the open segment's
/// `active_bytes`) exceeds `max_bytes` or the oldest is older than `max_age` at `now_ns`.
/// Returns how many were deleted.
pub(crate) fn enforce(
    sealed: &mut VecDeque<Sealed>,
    active_bytes: u64,
    policy: &Retention,
    now_ns: u64,
    sync: bool,
    dir: &Path,
) -> Result<usize, JournalError> {
    let mut total: u64 = active_bytes + sealed.iter().map(|s| s.bytes).sum::<u64>();
    let mut removed = 0;
    while let Some(oldest) = sealed.front() {
        let too_big = policy.max_bytes.is_some_and(|max| total > max);
        let too_old = policy.max_age.is_some_and(|age| {
            let age_ns = u64::try_from(age.as_nanos()).unwrap_or(u64::MAX);
            oldest.sealed_unix_ns.saturating_add(age_ns) < now_ns
        });
        if !(too_big || too_old) {
            break;
        }
        std::fs::remove_file(&oldest.path)
            .map_err(|e| JournalError::io("remove", &oldest.path, e))?;
        total -= oldest.bytes;
        sealed.pop_front();
        removed += 1;
    }
    if removed > 0 && sync {
        segment::sync_dir(dir)?;
    }
    Ok(removed)
}
