//! What a filter decides. A verdict is data, not an error.

use serde::{Deserialize, Serialize};

use crate::reply::Reply;

/// The decision of a filter (or of a whole [`Chain`](crate::Chain)) at one stage.
#[must_use = "a verdict decides the reply; dropping it ignores the filter"]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Verdict {
    /// No objection: ask the next filter.
    Continue,
    /// Accept now with the default positive reply; later filters are skipped.
    Accept,
    /// Temporary refusal: a 4xx reply, the client should retry.
    Defer(Reply),
    /// Permanent refusal: a 5xx reply.
    Reject(Reply),
    /// Reply (normally 421) and close the connection.
    Disconnect(Reply),
}

impl Verdict {
    /// `Defer`, correcting a reply that is not 4xx to `451 4.3.0` so a
    /// deferral can never be sent as a success or a permanent failure.
    pub fn defer(reply: Reply) -> Self {
        if reply.is_transient() {
            Verdict::Defer(reply)
        } else {
            Verdict::Defer(Reply::temporary_failure())
        }
    }

    /// `Reject`, correcting a reply that is not 5xx to `554 5.7.1`.
    pub fn reject(reply: Reply) -> Self {
        if reply.is_permanent() {
            Verdict::Reject(reply)
        } else {
            Verdict::Reject(Reply::new(554, (5, 7, 1), reply.text().to_owned()))
        }
    }

    /// Whether the chain should go on.
    pub fn is_continue(&self) -> bool {
        matches!(self, Verdict::Continue)
    }

    /// Whether the command is refused (defer, reject or disconnect).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Verdict::Defer(_) | Verdict::Reject(_) | Verdict::Disconnect(_)
        )
    }

    /// The reply this verdict carries, if any.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Verdict::Defer(r) | Verdict::Reject(r) | Verdict::Disconnect(r) => Some(r),
            Verdict::Continue | Verdict::Accept => None,
        }
    }
}

/// Something to do to the message besides accepting or refusing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Action {
    /// Prepend a header field to the message.
    AddHeader {
        /// Field name, e.g. `X-Greylist`.
        name: String,
        /// Field value (unfolded).
        value: String,
    },
    /// Accept, but hold in quarantine instead of delivering.
    Quarantine {
        /// Why, for the operator.
        reason: String,
    },
}
