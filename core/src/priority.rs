//! The four priority levels. Each has its own ring in every shard; a shard drains the
//! higher levels first, with a starvation guard so the lower ones still move.

/// How urgent an event is. `Critical` is drained first, `Low` last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Priority {
    /// Drained before everything else.
    Critical = 0,
    /// Drained after `Critical`.
    High = 1,
    /// The default.
    #[default]
    Normal = 2,
    /// Drained last, but never starved (see the starvation guard).
    Low = 3,
}

impl Priority {
    /// How many levels there are.
    pub const COUNT: usize = 4;
    /// All levels, highest first (the drain order).
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The index of this level in per-priority tables (`Critical` = 0).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The level stored as `byte`, if any.
    pub const fn from_u8(byte: u8) -> Option<Priority> {
        match byte {
            0 => Some(Priority::Critical),
            1 => Some(Priority::High),
            2 => Some(Priority::Normal),
            3 => Some(Priority::Low),
            _ => None,
        }
    }

    /// The spec's name of the level.
    pub const fn name(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_u8_round_trips_every_level_and_refuses_others() {
        for p in Priority::ALL {
            assert_eq!(Priority::from_u8(p as u8), Some(p));
        }
        for b in 4..=255u8 {
            assert_eq!(Priority::from_u8(b), None);
        }
        assert!(Priority::Critical < Priority::Low);
    }
}
