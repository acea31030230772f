//! Responses: the `action=` a policy server sends back, and how a core
//! [`Verdict`] becomes one.
//!
//! The mapping (Postfix `access(5)` gives each action's meaning):
//!
//! | verdict | action |
//! |---|---|
//! | `Continue`, `Accept` | `DUNNO`, or `PREPEND Name: value` / `HOLD reason` when a filter asked for a header / quarantine |
//! | `Defer(reply)` | `DEFER_IF_PERMIT text` by default ([`DeferStyle::IfPermit`]), or `4xx x.y.z text` ([`DeferStyle::Reply`]) |
//! | `Reject(reply)` | `5xx x.y.z text` |
//! | `Disconnect(reply)` | `421 x.y.z text` (Postfix replies and disconnects for 421) |
//!
//! `Accept` is *not* `OK`: `OK` would end Postfix's restriction list and
//! skip what comes after the policy service (e.g. `reject_unauth_destination`),
//! which could make Postfix an open relay. A policy service only ever narrows.

use std::fmt;

use portcullis_core::{Action, Reply, Verdict};

/// How a deferral is sent to Postfix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeferStyle {
    /// `DEFER_IF_PERMIT text`: Postfix defers only if the rest of its
    /// restrictions would permit, so a recipient a later rule rejects still
    /// gets its 5xx (what postgrey does). Postfix sends its own
    /// `450 4.7.1 <rcpt>: Recipient address rejected: text`; our code and
    /// enhanced code are not used.
    #[default]
    IfPermit,
    /// `4xx x.y.z text`: defer at once with our exact reply.
    Reply,
}

/// One policy response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyAction {
    /// `DUNNO`: no decision, Postfix goes on with its restrictions.
    Dunno,
    /// `DEFER_IF_PERMIT text`.
    DeferIfPermit(String),
    /// `NNN x.y.z text`: refuse with this reply (4xx or 5xx; 421 disconnects).
    Reply(Reply),
    /// `PREPEND name: value`: add a header, otherwise like `DUNNO`.
    Prepend {
        /// Header field name.
        name: String,
        /// Header field value.
        value: String,
    },
    /// `HOLD text`: accept into Postfix's hold queue (quarantine).
    Hold(String),
}

impl PolicyAction {
    /// The action for a chain's verdict and the actions filters pushed.
    ///
    /// At most one action fits in a response: a quarantine wins over headers,
    /// and only the first header is prepended.
    pub fn from_verdict(verdict: &Verdict, actions: &[Action], style: DeferStyle) -> Self {
        match verdict {
            Verdict::Defer(reply) => match style {
                DeferStyle::IfPermit => PolicyAction::DeferIfPermit(reply.text().to_owned()),
                DeferStyle::Reply => PolicyAction::Reply(reply.clone()),
            },
            Verdict::Reject(reply) | Verdict::Disconnect(reply) => {
                PolicyAction::Reply(reply.clone())
            }
            // Continue, Accept, and any verdict added to core later: no objection.
            _ => {
                if let Some(reason) = actions.iter().find_map(|a| match a {
                    Action::Quarantine { reason } => Some(reason),
                    _ => None,
                }) {
                    return PolicyAction::Hold(reason.clone());
                }
                actions
                    .iter()
                    .find_map(|a| match a {
                        Action::AddHeader { name, value } => Some(PolicyAction::Prepend {
                            name: name.clone(),
                            value: value.clone(),
                        }),
                        _ => None,
                    })
                    .unwrap_or(PolicyAction::Dunno)
            }
        }
    }

    /// Whether this refuses the request (defer or reject).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PolicyAction::DeferIfPermit(_) | PolicyAction::Reply(_)
        )
    }

    /// Append `action=...\n\n` to `out`. Text never carries a line break or
    /// other control character to the wire (each becomes a space, and the
    /// lines of a multi-line reply are joined with `; `), so no text can end
    /// the response early or forge a second one.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"action=");
        match self {
            PolicyAction::Dunno => out.extend_from_slice(b"DUNNO"),
            PolicyAction::DeferIfPermit(text) => {
                out.extend_from_slice(b"DEFER_IF_PERMIT ");
                push_text(out, text);
            }
            PolicyAction::Reply(reply) => {
                out.extend_from_slice(reply.code().to_string().as_bytes());
                if let Some(e) = reply.enhanced() {
                    out.push(b' ');
                    out.extend_from_slice(e.to_string().as_bytes());
                }
                out.push(b' ');
                push_text(out, reply.text());
            }
            PolicyAction::Prepend { name, value } => {
                out.extend_from_slice(b"PREPEND ");
                // A field name is printable ASCII without ':' (RFC 5322 §3.6.8).
                for b in name.bytes() {
                    out.push(if (33..=126).contains(&b) && b != b':' {
                        b
                    } else {
                        b'-'
                    });
                }
                out.extend_from_slice(b": ");
                push_text(out, value);
            }
            PolicyAction::Hold(text) => {
                out.extend_from_slice(b"HOLD ");
                push_text(out, text);
            }
        }
        out.extend_from_slice(b"\n\n");
    }

    /// The wire form.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_wire(&mut out);
        out
    }
}

impl fmt::Display for PolicyAction {
    /// The `action=` value, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = self.to_wire();
        let value = wire
            .strip_prefix(b"action=")
            .and_then(|w| w.strip_suffix(b"\n\n"))
            .unwrap_or(&wire);
        f.write_str(&String::from_utf8_lossy(value))
    }
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    let start = out.len();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"; ");
        }
        for c in line.chars() {
            if c.is_control() {
                out.push(b' ');
            } else {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if out.len() == start {
        // Postfix wants text after DEFER_IF_PERMIT/HOLD/NNN; never send "NNN ".
        out.extend_from_slice(b"Policy decision");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_map_as_documented() {
        let style = DeferStyle::IfPermit;
        assert_eq!(
            PolicyAction::from_verdict(&Verdict::Continue, &[], style).to_wire(),
            b"action=DUNNO\n\n"
        );
        assert_eq!(
            PolicyAction::from_verdict(&Verdict::Accept, &[], style).to_wire(),
            b"action=DUNNO\n\n",
            "Accept must not become OK"
        );
        let grey = Verdict::Defer(Reply::greylisted(300));
        assert_eq!(
            PolicyAction::from_verdict(&grey, &[], style).to_wire(),
            b"action=DEFER_IF_PERMIT Greylisted, please try again in 300 seconds\n\n"
        );
        assert_eq!(
            PolicyAction::from_verdict(&grey, &[], DeferStyle::Reply).to_wire(),
            b"action=451 4.7.1 Greylisted, please try again in 300 seconds\n\n"
        );
        assert_eq!(
            PolicyAction::from_verdict(&Verdict::Reject(Reply::no_such_user()), &[], style)
                .to_wire(),
            b"action=550 5.1.1 Recipient address rejected: user unknown\n\n"
        );
        assert_eq!(
            PolicyAction::from_verdict(
                &Verdict::Disconnect(Reply::service_unavailable()),
                &[],
                style
            )
            .to_string(),
            "421 4.3.2 Service not available, closing transmission channel"
        );
    }

    #[test]
    fn headers_and_quarantine_only_when_continuing() {
        let header = Action::AddHeader {
            name: "X-Greylist".into(),
            value: "delayed 300 seconds".into(),
        };
        let hold = Action::Quarantine {
            reason: "bulk".into(),
        };
        let style = DeferStyle::IfPermit;
        assert_eq!(
            PolicyAction::from_verdict(&Verdict::Continue, std::slice::from_ref(&header), style)
                .to_wire(),
            b"action=PREPEND X-Greylist: delayed 300 seconds\n\n"
        );
        assert_eq!(
            PolicyAction::from_verdict(&Verdict::Continue, &[header.clone(), hold], style)
                .to_wire(),
            b"action=HOLD bulk\n\n"
        );
        assert_eq!(
            PolicyAction::from_verdict(&Verdict::Reject(Reply::relay_denied()), &[header], style)
                .to_wire(),
            b"action=554 5.7.1 Relay access denied\n\n"
        );
    }

    #[test]
    fn text_cannot_break_the_framing() {
        let reply = Reply::new(550, (5, 7, 1), "line one\nline two\r\n\naction=OK");
        let wire = PolicyAction::Reply(reply).to_wire();
        assert_eq!(
            wire,
            b"action=550 5.7.1 line one; line two ; ; action=OK\n\n"
        );
        let wire = PolicyAction::Prepend {
            name: "X-Bad: Name\n".into(),
            value: "v\n\nx".into(),
        }
        .to_wire();
        assert_eq!(wire, b"action=PREPEND X-Bad--Name-: v; ; x\n\n");
        assert_eq!(
            PolicyAction::DeferIfPermit(String::new()).to_wire(),
            b"action=DEFER_IF_PERMIT Policy decision\n\n"
        );
    }
}
