//! What one invocation may make the host hold, and how much it may log.
//!
//! Two small accounts, both reset per invocation:
//!
//! - [`HostBudget`]: host-side bytes an invocation causes (request handles it built, responses its
//!   fetches and KV reads returned, the response it is building). The budget equals the
//!   invocation's memory limit ([`crate::Limits::memory_bytes`]), counted apart from the guest's
//!   own linear memory: a Worker can make the node hold at most twice its memory limit. Past it
//!   the host call that asked returns `LIMIT`, allocates nothing, and the invocation ends with the
//!   memory-limit answer whatever the guest does next (`crate::invoke`). Buffers count by
//!   length; a growing buffer's spare capacity (at most as much again) is not counted.
//! - [`LogAllowance`]: bytes of log lines an invocation may emit
//!   ([`crate::limits::MAX_LOG_BYTES_PER_INVOCATION`]); lines past it are dropped and counted, and
//!   one line says so when the invocation ends.

use crate::limits::{LOG_LINE_OVERHEAD_BYTES, MAX_LOG_BYTES_PER_INVOCATION};

/// Host bytes held for one invocation, against its memory limit.
#[derive(Debug)]
pub(crate) struct HostBudget {
    limit: usize,
    held: usize,
    exceeded: bool,
}

impl HostBudget {
    pub fn new(limit_bytes: u64) -> Self {
        HostBudget {
            limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            held: 0,
            exceeded: false,
        }
    }

    /// Takes `bytes` from the budget before the host allocates them. `false` (and the
    /// invocation is marked as over its memory limit) if they do not fit; nothing is taken then.
    #[must_use]
    pub fn reserve(&mut self, bytes: usize) -> bool {
        match self.held.checked_add(bytes) {
            Some(held) if held <= self.limit => {
                self.held = held;
                true
            }
            _ => {
                self.exceeded = true;
                false
            }
        }
    }

    /// Gives back `bytes` the host no longer holds.
    pub fn release(&mut self, bytes: usize) {
        self.held = self.held.saturating_sub(bytes);
    }

    /// Changes a held value's size from `before` to `after` bytes: takes the growth (`false`,
    /// and nothing taken, if it does not fit) or gives back the shrinkage.
    #[must_use]
    pub fn resize(&mut self, before: usize, after: usize) -> bool {
        if after > before {
            self.reserve(after - before)
        } else {
            self.release(before - after);
            true
        }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// After an edit that reserved `reserved` bytes up front (an upper bound) and changed a
    /// value's size from `before` to `after`: gives back what the edit did not use.
    pub fn settle(&mut self, reserved: usize, before: usize, after: usize) {
        let used = after.saturating_sub(before);
        self.release(reserved.saturating_sub(used));
        self.release(before.saturating_sub(after));
    }

    /// Some host call of this invocation asked for more than the budget.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
    }
}

/// Log volume of one invocation, against [`MAX_LOG_BYTES_PER_INVOCATION`].
#[derive(Debug, Default)]
pub(crate) struct LogAllowance {
    used: usize,
    /// Lines dropped because the allowance was spent, and their bytes.
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
}

impl LogAllowance {
    /// Counts a line of `bytes` (as emitted, after the per-line cut); `false` if it is past the
    /// allowance and must be dropped. Each line also counts [`LOG_LINE_OVERHEAD_BYTES`], so empty
    /// lines cannot be written without end.
    pub fn admit(&mut self, bytes: usize) -> bool {
        let cost = bytes.saturating_add(LOG_LINE_OVERHEAD_BYTES);
        if self.used.saturating_add(cost) > MAX_LOG_BYTES_PER_INVOCATION {
            self.dropped_lines += 1;
            self.dropped_bytes += bytes as u64;
            return false;
        }
        self.used += cost;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_past_the_limit_and_remembers() {
        let mut b = HostBudget::new(100);
        assert!(b.reserve(60));
        assert!(!b.reserve(41));
        assert!(b.exceeded());
        assert_eq!(b.held(), 60, "a refused reservation takes nothing");
        b.release(60);
        assert!(b.reserve(100));
        assert!(!b.reserve(usize::MAX));
    }

    #[test]
    fn settle_returns_what_an_edit_did_not_use() {
        let mut b = HostBudget::new(1000);
        assert!(b.reserve(100)); // a value of 100 bytes
        // Replace it by 30 bytes: reserve the new 30 up front, then settle.
        assert!(b.reserve(30));
        b.settle(30, 100, 30);
        assert_eq!(b.held(), 30);
        // Grow it to 80 with an upper bound of 64 reserved.
        assert!(b.reserve(64));
        b.settle(64, 30, 80);
        assert_eq!(b.held(), 80);
        assert!(b.resize(80, 20));
        assert_eq!(b.held(), 20);
        assert!(!b.resize(20, 2000));
        assert_eq!(b.held(), 20);
    }

    #[test]
    fn log_allowance_drops_and_counts_past_the_limit() {
        let mut a = LogAllowance::default();
        // Lines that fill the allowance exactly.
        let line = 4096 - LOG_LINE_OVERHEAD_BYTES;
        let fit = MAX_LOG_BYTES_PER_INVOCATION / (line + LOG_LINE_OVERHEAD_BYTES);
        for _ in 0..fit {
            assert!(a.admit(line));
        }
        assert!(!a.admit(line));
        assert!(!a.admit(0), "empty lines count too");
        assert_eq!((a.dropped_lines, a.dropped_bytes), (2, line as u64));
    }
}
