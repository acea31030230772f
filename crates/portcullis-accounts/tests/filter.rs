//! The account filters, on the file backend (the directory contract itself
//! is tested against both backends in `contract.rs`).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use portcullis_accounts::{
    AccountDirectory, AccountError, AccountId, AuthOutcome, FileDirectory, LocalRecipientFilter,
    SenderIdentityFilter,
};
use portcullis_core::{
    Address, Chain, Client, Context, Domain, Filter, ForwardPath, MailParams, Recipient, Reply,
    ReversePath, Verdict, async_trait,
};

fn directory() -> Arc<dyn AccountDirectory> {
    Arc::new(FileDirectory::from_toml(&fixture().to_toml().unwrap()).unwrap())
}

fn context(authenticated: Option<&str>) -> Context {
    let mut client = Client::new("192.0.2.10:40000".parse().unwrap());
    client.authenticated = authenticated.map(str::to_owned);
    Context::new(client)
}

async fn rcpt(chain: &Chain, path: &str) -> Verdict {
    let mut cx = context(None);
    let mut rcpt = Recipient::new(ForwardPath::parse(path).unwrap());
    chain.rcpt_to(&mut cx, &mut rcpt).await
}

async fn mail(chain: &Chain, login: Option<&str>, path: &str) -> Verdict {
    let mut cx = context(login);
    let mut from = ReversePath::parse(path).unwrap();
    chain
        .mail_from(&mut cx, &mut from, &MailParams::default())
        .await
}

#[tokio::test]
async fn unknown_local_recipients_are_refused() {
    let local = vec![Domain::parse("Example.ORG").unwrap()];
    let chain = Chain::new().with(Arc::new(LocalRecipientFilter::new(directory(), local)));
    for known in [
        "<alice@example.org>",
        "<ALICE@EXAMPLE.ORG>",
        "<bob@example.org>",
    ] {
        assert_eq!(rcpt(&chain, known).await, Verdict::Continue, "{known}");
    }
    assert_eq!(
        rcpt(&chain, "<nobody@example.org>").await,
        Verdict::Reject(Reply::no_such_user())
    );
    // Postmaster is always accepted (RFC 5321 §4.5.1), foreign domains are not ours to judge.
    for pass in [
        "<Postmaster>",
        "<POSTMASTER@example.org>",
        "<nobody@elsewhere.example>",
        "<x@sub.example.org>",
    ] {
        assert_eq!(rcpt(&chain, pass).await, Verdict::Continue, "{pass}");
    }
}

#[tokio::test]
async fn authenticated_senders_are_held_to_their_identities() {
    let chain = Chain::new().with(Arc::new(SenderIdentityFilter::new(directory())));
    let refused = Verdict::Reject(Reply::policy_rejected(
        "Sender address not owned by the authenticated user",
    ));
    assert_eq!(
        mail(&chain, Some("alice@example.org"), "<alice@example.org>").await,
        Verdict::Continue
    );
    assert_eq!(
        mail(&chain, Some("alice@example.org"), "<bob@example.org>").await,
        refused
    );
    assert_eq!(
        mail(&chain, Some("alice@example.org"), "<>").await,
        Verdict::Continue
    );
    assert_eq!(
        mail(
            &chain,
            Some("carol@example.org"),
            "<carol@previous.example>"
        )
        .await,
        Verdict::Continue
    );
    assert_eq!(
        mail(&chain, Some("example.net"), "<sales@example.net>").await,
        Verdict::Continue
    );
    assert_eq!(
        mail(&chain, Some("example.net"), "<sales@example.org>").await,
        refused
    );
    assert_eq!(
        mail(&chain, Some("gone@example.org"), "<gone@example.org>").await,
        refused
    );
    // Not authenticated: this filter has no opinion (relay rules decide).
    assert_eq!(
        mail(&chain, None, "<bob@example.org>").await,
        Verdict::Continue
    );
}

/// A directory that cannot answer.
struct Down;

#[async_trait]
impl AccountDirectory for Down {
    async fn lookup(
        &self,
        _: &AccountId,
    ) -> Result<Option<portcullis_accounts::Account>, AccountError> {
        Err(AccountError::Task("down".into()))
    }
    async fn authenticate(&self, _: &str, _: &[u8]) -> Result<AuthOutcome, AccountError> {
        Err(AccountError::Task("down".into()))
    }
    async fn is_local_recipient(&self, _: &Address) -> Result<bool, AccountError> {
        Err(AccountError::Task("down".into()))
    }
}

#[tokio::test]
async fn directory_failures_defer_never_reject() {
    let down: Arc<dyn AccountDirectory> = Arc::new(Down);
    let chain = Chain::new()
        .with(Arc::new(LocalRecipientFilter::new(
            Arc::clone(&down),
            vec![Domain::parse("example.org").unwrap()],
        )))
        .with(Arc::new(SenderIdentityFilter::new(down)));
    let deferred = Verdict::Defer(Reply::temporary_failure());
    assert_eq!(rcpt(&chain, "<alice@example.org>").await, deferred);
    assert_eq!(
        mail(&chain, Some("alice@example.org"), "<alice@example.org>").await,
        deferred
    );
}
