//! [`SpoolHealthFilter`]: refuse new mail while the spool cannot store it.

use portcullis_core::{Context, Filter, MailParams, Reply, ReversePath, Verdict, async_trait};

use crate::spool::Spool;

/// Defers `MAIL FROM` with `452 4.3.1` when the spool refuses writes (after
/// a failed `fsync`, until the process restarts and recovers), so clients
/// retry later instead of sending a message that could not be accepted.
/// RFC 5321 §4.2.3 (452: insufficient system storage) with RFC 3463 4.3.1.
#[derive(Debug, Clone)]
pub struct SpoolHealthFilter {
    spool: Spool,
}

impl SpoolHealthFilter {
    /// Watch `spool`.
    pub fn new(spool: Spool) -> Self {
        SpoolHealthFilter { spool }
    }

    /// The plain decision: `Continue` while the spool is healthy.
    pub fn check(&self) -> Verdict {
        if self.spool.is_healthy() {
            Verdict::Continue
        } else {
            Verdict::defer(Reply::insufficient_storage())
        }
    }
}

#[async_trait]
impl Filter for SpoolHealthFilter {
    fn name(&self) -> &'static str {
        "spool-health"
    }

    async fn mail_from(
        &self,
        _cx: &mut Context,
        _from: &mut ReversePath,
        _params: &MailParams,
    ) -> Verdict {
        self.check()
    }
}
