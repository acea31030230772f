//! The [`Filter`] trait and the [`Chain`] that runs filters in order.

use std::sync::Arc;

use async_trait::async_trait;

use crate::address::ReversePath;
use crate::client::Client;
use crate::envelope::{Envelope, MailParams, Recipient};
use crate::verdict::{Action, Verdict};

/// The SMTP stages a filter can act at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Stage {
    /// Connection opened, before the greeting.
    Connect,
    /// HELO/EHLO received.
    Helo,
    /// AUTH succeeded (credentials already verified by the caller).
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO, once per recipient.
    RcptTo,
    /// DATA or the first BDAT.
    DataStart,
    /// The whole message received.
    Message,
}

/// What filters see and may change: the client, the transaction so far, and
/// the actions decided for the message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Context {
    /// The connected client.
    pub client: Client,
    /// The current transaction, once MAIL FROM was accepted.
    pub envelope: Option<Envelope>,
    /// Actions accumulated by filters (headers to add, quarantine).
    pub actions: Vec<Action>,
    /// Name of the filter whose verdict ended the last chain run, if any.
    pub decided_by: Option<&'static str>,
}

impl Context {
    /// A context for a new connection.
    pub fn new(client: Client) -> Self {
        Context {
            client,
            envelope: None,
            actions: Vec::new(),
            decided_by: None,
        }
    }

    /// Forget the transaction (RSET, end of message, new EHLO).
    pub fn reset_transaction(&mut self) {
        self.envelope = None;
        self.actions.clear();
    }
}

/// One filter: a method per SMTP stage, each defaulting to [`Verdict::Continue`].
///
/// Filters are shared between sessions (`Arc<dyn Filter>`), so they take
/// `&self` and keep their state in stores. A filter may rewrite what it is
/// given (e.g. BATV tags the sender, strips a tag from a recipient) and may
/// push [`Action`]s into the context.
#[async_trait]
pub trait Filter: Send + Sync {
    /// A short name for logs and metrics, e.g. `"greylist"`.
    fn name(&self) -> &'static str;

    /// A connection was opened.
    async fn connect(&self, _cx: &mut Context) -> Verdict {
        Verdict::Continue
    }

    /// HELO/EHLO (the name is in `cx.client.helo`).
    async fn helo(&self, _cx: &mut Context) -> Verdict {
        Verdict::Continue
    }

    /// The client authenticated as `cx.client.authenticated`.
    async fn auth(&self, _cx: &mut Context) -> Verdict {
        Verdict::Continue
    }

    /// MAIL FROM; the filter may rewrite the sender.
    async fn mail_from(
        &self,
        _cx: &mut Context,
        _from: &mut ReversePath,
        _params: &MailParams,
    ) -> Verdict {
        Verdict::Continue
    }

    /// RCPT TO; the filter may rewrite the recipient.
    async fn rcpt_to(&self, _cx: &mut Context, _rcpt: &mut Recipient) -> Verdict {
        Verdict::Continue
    }

    /// DATA or first BDAT, before the message is received.
    async fn data_start(&self, _cx: &mut Context) -> Verdict {
        Verdict::Continue
    }

    /// The whole message (headers and body, dot-unstuffed) was received.
    async fn message(&self, _cx: &mut Context, _message: &[u8]) -> Verdict {
        Verdict::Continue
    }
}

/// Filters run in order; the first verdict that is not `Continue` ends the run
/// and names its filter in [`Context::decided_by`].
#[derive(Clone, Default)]
pub struct Chain {
    filters: Vec<Arc<dyn Filter>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.filters.iter().map(|x| x.name()))
            .finish()
    }
}

macro_rules! run_chain {
    ($self:ident, $cx:ident, |$f:ident| $call:expr) => {{
        $cx.decided_by = None;
        for $f in &$self.filters {
            let verdict = $call;
            if !verdict.is_continue() {
                $cx.decided_by = Some($f.name());
                return verdict;
            }
        }
        Verdict::Continue
    }};
}

impl Chain {
    /// An empty chain (every stage continues).
    pub fn new() -> Self {
        Chain::default()
    }

    /// Append a filter.
    pub fn with(mut self, filter: Arc<dyn Filter>) -> Self {
        self.filters.push(filter);
        self
    }

    /// Append a filter in place.
    pub fn push(&mut self, filter: Arc<dyn Filter>) {
        self.filters.push(filter);
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }
}

#[async_trait]
impl Filter for Chain {
    fn name(&self) -> &'static str {
        "chain"
    }
    async fn connect(&self, cx: &mut Context) -> Verdict {
        run_chain!(self, cx, |f| f.connect(cx).await)
    }
    async fn helo(&self, cx: &mut Context) -> Verdict {
        run_chain!(self, cx, |f| f.helo(cx).await)
    }
    async fn auth(&self, cx: &mut Context) -> Verdict {
        run_chain!(self, cx, |f| f.auth(cx).await)
    }
    async fn mail_from(
        &self,
        cx: &mut Context,
        from: &mut ReversePath,
        params: &MailParams,
    ) -> Verdict {
        run_chain!(self, cx, |f| f.mail_from(cx, from, params).await)
    }
    async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        run_chain!(self, cx, |f| f.rcpt_to(cx, rcpt).await)
    }
    async fn data_start(&self, cx: &mut Context) -> Verdict {
        run_chain!(self, cx, |f| f.data_start(cx).await)
    }
    async fn message(&self, cx: &mut Context, message: &[u8]) -> Verdict {
        run_chain!(self, cx, |f| f.message(cx, message).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::ForwardPath;
    use crate::reply::Reply;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(&'static str, AtomicUsize, Verdict);

    #[async_trait]
    impl Filter for Count {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
            self.1.fetch_add(1, Ordering::SeqCst);
            cx.actions.push(Action::AddHeader {
                name: "X-Seen".into(),
                value: self.0.into(),
            });
            rcpt.notify = Some(crate::envelope::Notify::NEVER);
            self.2.clone()
        }
    }

    fn cx() -> Context {
        Context::new(Client::new("192.0.2.1:25".parse().unwrap()))
    }

    #[tokio::test]
    async fn chain_stops_at_first_refusal() {
        let a = Arc::new(Count("a", AtomicUsize::new(0), Verdict::Continue));
        let b = Arc::new(Count(
            "b",
            AtomicUsize::new(0),
            Verdict::Reject(Reply::no_such_user()),
        ));
        let c = Arc::new(Count("c", AtomicUsize::new(0), Verdict::Continue));
        let chain = Chain::new().with(a.clone()).with(b.clone()).with(c.clone());
        let mut cx = cx();
        let mut rcpt = Recipient::new(ForwardPath::Postmaster);
        let v = chain.rcpt_to(&mut cx, &mut rcpt).await;
        assert_eq!(v, Verdict::Reject(Reply::no_such_user()));
        assert_eq!(cx.decided_by, Some("b"));
        assert_eq!(
            [
                a.1.load(Ordering::SeqCst),
                b.1.load(Ordering::SeqCst),
                c.1.load(Ordering::SeqCst)
            ],
            [1, 1, 0]
        );
        assert_eq!(cx.actions.len(), 2);
        assert_eq!(
            rcpt.notify,
            Some(crate::envelope::Notify::NEVER),
            "filters may rewrite the recipient"
        );
    }

    #[tokio::test]
    async fn empty_chain_and_defaults_continue() {
        let chain = Chain::new().with(Arc::new(Chain::new()));
        let mut cx = cx();
        assert!(chain.connect(&mut cx).await.is_continue());
        assert!(chain.message(&mut cx, b"x").await.is_continue());
        assert_eq!(cx.decided_by, None);
    }

    #[test]
    fn verdict_constructors_keep_classes() {
        assert_eq!(
            Verdict::defer(Reply::ok()).reply().map(Reply::code),
            Some(451)
        );
        assert_eq!(
            Verdict::reject(Reply::greylisted(5))
                .reply()
                .map(Reply::code),
            Some(554)
        );
        assert!(Verdict::Disconnect(Reply::service_unavailable()).is_refusal());
    }
}
