//! Queue identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The identifier of one spooled message, unique within a spool.
///
/// Displayed as 16 lower-case hex digits (the form used in `250 Message
/// accepted as …` replies and in logs). Ids grow monotonically within one
/// spool, so sorting by id sorts by acceptance order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The text was not a queue id (16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a queue id: {0:?}")]
#[non_exhaustive]
pub struct ParseQueueIdError(pub String);

impl FromStr for QueueId {
    type Err = ParseQueueIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseQueueIdError(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(QueueId)
            .map_err(|_| ParseQueueIdError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips() {
        let id = QueueId(0x1234_abcd);
        assert_eq!(id.to_string(), "000000001234abcd");
        assert_eq!("000000001234abcd".parse::<QueueId>().unwrap(), id);
        assert!("xyz".parse::<QueueId>().is_err());
        assert!("".parse::<QueueId>().is_err());
        assert!("00000000000000000".parse::<QueueId>().is_err());
    }
}
