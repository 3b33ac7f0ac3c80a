//! The policy epoch: one word that says whether a policy is installed and counts the
//! installs and removals, so a publish can tell with one load that nothing changed since
//! its publisher last looked.
//!
//! ```text
//!  bit 63 .............. 1   0
//!     | generation          | on |
//! ```
//!
//! The protocol (modelled in loom below, with a plain atomic standing in for the
//! `ArcSwapOption` that holds the policy, whose stores are `SeqCst`):
//! - `set` stores the new policy, *then* advances the epoch (release);
//! - a publish loads the epoch (acquire). Equal to the one its lease was bound under: no
//!   `set` or `clear` has advanced it since, so the lease's policy is still the installed
//!   one. Different: it loads the policy, which is the one of that epoch or a newer one
//!   (the acquire saw the release that followed its store), and binds the lease again.
//!
//! So a publish that starts after `set_policy` returned sees the new epoch and is checked
//! by the new policy or a newer one.

use core::sync::atomic::Ordering;

use crate::sync::AtomicU64;

/// The epoch word.
#[derive(Debug, Default)]
pub(crate) struct Epoch(AtomicU64);

impl Epoch {
    /// The current word: compare it with [`Epoch::is_on`] and with an earlier word.
    #[inline(always)]
    pub(crate) fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Whether a word says a policy is installed.
    #[inline(always)]
    pub(crate) fn is_on(word: u64) -> bool {
        word & 1 != 0
    }

    /// Starts a new generation, with a policy (`on`) or without; call after storing the
    /// policy (or its absence).
    pub(crate) fn advance(&self, on: bool) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(((w >> 1).wrapping_add(1) << 1) | u64::from(on))
            });
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// A publisher bound under the first policy; `set` installs a second one and then
    /// says it returned. A publish that starts after that must see a new epoch and load
    /// the second policy.
    #[test]
    fn loom_a_publish_after_set_returned_sees_the_new_policy() {
        loom::model(|| {
            let epoch = Arc::new(Epoch::default());
            let policy = Arc::new(AtomicU64::new(1));
            epoch.advance(true);
            let bound = epoch.load();
            let returned = Arc::new(AtomicBool::new(false));
            let setter = {
                let (epoch, policy, returned) = (
                    Arc::clone(&epoch),
                    Arc::clone(&policy),
                    Arc::clone(&returned),
                );
                loom::thread::spawn(move || {
                    policy.store(2, Ordering::SeqCst);
                    epoch.advance(true);
                    returned.store(true, Ordering::Release);
                })
            };
            if returned.load(Ordering::Acquire) {
                let now = epoch.load();
                assert_ne!(now, bound, "the lease would pass under the old policy");
                assert_eq!(policy.load(Ordering::SeqCst), 2);
            }
            setter.join().unwrap();
            assert!(Epoch::is_on(epoch.load()));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_install_and_removal_is_a_new_word() {
        let e = Epoch::default();
        let w0 = e.load();
        assert!(!Epoch::is_on(w0));
        e.advance(true);
        let w1 = e.load();
        assert!(Epoch::is_on(w1) && w1 != w0);
        e.advance(true);
        let w2 = e.load();
        assert!(Epoch::is_on(w2) && w2 != w1);
        e.advance(false);
        assert!(!Epoch::is_on(e.load()));
    }
}
