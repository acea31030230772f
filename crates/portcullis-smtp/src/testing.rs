//! Test support (feature `testing`): drive a [`Session`] over a byte stream
//! fed in pieces and record what it did, so that two feedings of the same
//! bytes can be compared. Shared by this crate's property tests and the
//! `smtp_session` fuzz target.

use portcullis_core::Verdict;

use crate::{Event, Session};

/// Feed `bytes` to `session` cut at the sorted offsets `cuts` (offsets past
/// the end are clamped), answering the n-th decision (counting from 1) with
/// `verdict(n)`. Returns the events, one string each (the chunks of a
/// message merged into its `complete` line, with the exact octets), and all
/// reply bytes written.
///
/// # Panics
/// If an event's size disagrees with the chunks it announced, or the
/// session refuses a decision it handed out: both are bugs in the session.
pub fn drive(
    session: &mut Session,
    bytes: &[u8],
    cuts: &[usize],
    mut verdict: impl FnMut(u32) -> Verdict,
) -> (Vec<String>, Vec<u8>) {
    let mut events = Vec::new();
    let mut body = Vec::new();
    let mut out = Vec::new();
    let mut decisions = 0u32;
    let mut pump = |s: &mut Session, events: &mut Vec<String>, out: &mut Vec<u8>| {
        while let Some(e) = s.poll_event() {
            let decision = match e {
                Event::MessageChunk(c) => {
                    body.extend_from_slice(&c);
                    None
                }
                Event::Reset => {
                    body.clear();
                    events.push("reset".into());
                    None
                }
                Event::MessageAborted { reply } => {
                    body.clear();
                    events.push(format!("aborted {reply}"));
                    None
                }
                Event::MessageComplete { size, decision } => {
                    assert_eq!(size, body.len() as u64, "size of the announced chunks");
                    events.push(format!("complete {size} {body:?}"));
                    body.clear();
                    Some(decision)
                }
                Event::Connect { decision }
                | Event::Helo { decision, .. }
                | Event::Auth { decision, .. }
                | Event::MailFrom { decision, .. }
                | Event::RcptTo { decision, .. }
                | Event::DataStart { decision, .. } => {
                    events.push(format!("{:?}", decision.stage()));
                    Some(decision)
                }
                other => {
                    events.push(format!("{other:?}"));
                    None
                }
            };
            if let Some(d) = decision {
                decisions += 1;
                s.decide(d, verdict(decisions))
                    .expect("the session takes the decision it handed out");
            }
        }
        s.take_output(out);
    };
    pump(session, &mut events, &mut out);
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let c = c.clamp(start, bytes.len());
        session.receive(&bytes[start..c]);
        pump(session, &mut events, &mut out);
        start = c;
    }
    (events, out)
}
