//! Per-message delivery state: what the spool persists and the scheduler
//! works from, so a restart resumes where the queue left off.

use std::time::SystemTime;

use portcullis_core::Reply;
use serde::{Deserialize, Serialize};

/// Where one recipient of a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RecipientStatus {
    /// Not yet delivered; will be (re)tried.
    Pending,
    /// Accepted by the next hop (2xx). Never sent again.
    Delivered,
    /// Permanently failed (5xx, bad route, or expired). Never sent again.
    Bounced,
}

impl RecipientStatus {
    /// Whether nothing more will happen for this recipient.
    pub fn is_final(self) -> bool {
        !matches!(self, RecipientStatus::Pending)
    }
}

/// The persisted state of one recipient (same order as
/// [`Envelope::recipients`](portcullis_core::Envelope::recipients)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecipientState {
    /// Delivered, bounced or still pending.
    pub status: RecipientStatus,
    /// Delivery attempts made for this recipient.
    pub attempts: u32,
    /// When to try again; `None` means as soon as possible.
    pub next_attempt: Option<SystemTime>,
    /// The last reply from the next hop (or the local reason), if any.
    pub last_reply: Option<Reply>,
}

impl RecipientState {
    /// A recipient not yet tried.
    pub fn new() -> Self {
        RecipientState {
            status: RecipientStatus::Pending,
            attempts: 0,
            next_attempt: None,
            last_reply: None,
        }
    }
}

impl Default for RecipientState {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a message is held back from delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum Hold {
    /// Deliverable.
    #[default]
    None,
    /// Held by an operator (`hold`); `release` makes it deliverable again.
    Held,
    /// Quarantined by a filter ([`Action::Quarantine`](portcullis_core::Action));
    /// listed separately, `release` makes it deliverable.
    Quarantined {
        /// Why, as the filter said.
        reason: String,
    },
}

impl Hold {
    /// Whether delivery is suspended.
    pub fn is_held(&self) -> bool {
        !matches!(self, Hold::None)
    }
}

/// Everything about a message's delivery that must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeliveryState {
    /// One entry per envelope recipient, in envelope order.
    pub recipients: Vec<RecipientState>,
    /// Whether the delay-warning DSN was already produced.
    pub delay_warned: bool,
    /// Held or quarantined messages are not scheduled.
    pub hold: Hold,
}

impl DeliveryState {
    /// The state of a freshly accepted message with `recipients` recipients.
    pub fn new(recipients: usize) -> Self {
        DeliveryState {
            recipients: vec![RecipientState::new(); recipients],
            delay_warned: false,
            hold: Hold::None,
        }
    }

    /// Whether every recipient is delivered or bounced.
    pub fn is_complete(&self) -> bool {
        self.recipients.iter().all(|r| r.status.is_final())
    }

    /// Indexes of the recipients still pending.
    pub fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == RecipientStatus::Pending)
            .map(|(i, _)| i)
    }
}
