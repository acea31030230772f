//! Time, injected: every time-based rule reads it through [`Clock`], so tests
//! move time forward instead of sleeping.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// Implementations must be cheap to call and safe to share between threads.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Seconds since the Unix epoch (0 for times before it).
    fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The real clock. Only binaries should construct it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place library code may read the wall clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// Start at `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Start at `secs` after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self::new(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Move forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += d;
    }

    /// Jump to `t` (may go backwards, to test clock steps).
    pub fn set(&self, t: SystemTime) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

impl Default for ManualClock {
    /// Starts at 2026-01-01T00:00:00Z, a fixed and recognisable instant.
    fn default() -> Self {
        Self::at_unix(1_767_225_600)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at_unix(1000);
        assert_eq!(c.unix_secs(), 1000);
        c.advance(Duration::from_secs(300));
        assert_eq!(c.unix_secs(), 1300);
        c.set(UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!(c.unix_secs(), 5);
    }
}
