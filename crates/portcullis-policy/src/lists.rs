//! Sender and recipient allow/deny lists: addresses, domains and wildcards.

use portcullis_core::Address;

/// What a list says about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    /// On the deny list (checked first: deny wins).
    Denied,
    /// On the allow list: exempt from the rate and recipient limits.
    Allowed,
    /// On neither.
    Neither,
}

/// One pattern, matched case-insensitively against `local@domain` (domain
/// in A-labels):
///
/// - `user@example.com` — that address;
/// - `example.com` or `@example.com` — any address at that domain;
/// - `.example.com` — any address at a subdomain of it (not the domain itself);
/// - anything with `*` (any run of characters) or `?` (one character) is a
///   wildcard over the whole address, e.g. `*@*.example.com`, `bounce-*@x.org`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(PatternKind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Address(String),
    Domain(String),
    Subdomains(String),
    Glob(String),
}

impl Pattern {
    /// Parse a pattern (never fails: anything is at worst a literal).
    pub fn new(pattern: &str) -> Self {
        let p = pattern.trim().to_ascii_lowercase();
        let kind = if p.contains(['*', '?']) {
            PatternKind::Glob(p)
        } else if let Some(d) = p.strip_prefix('@') {
            PatternKind::Domain(d.to_owned())
        } else if let Some(d) = p.strip_prefix('.') {
            PatternKind::Subdomains(format!(".{d}"))
        } else if p.contains('@') {
            PatternKind::Address(p)
        } else {
            PatternKind::Domain(p)
        };
        Pattern(kind)
    }

    /// Whether `address` matches.
    pub fn matches(&self, address: &Address) -> bool {
        let domain = address.domain().ascii();
        match &self.0 {
            PatternKind::Domain(d) => domain.eq_ignore_ascii_case(d),
            PatternKind::Subdomains(suffix) => {
                domain.len() > suffix.len()
                    && domain
                        .get(domain.len() - suffix.len()..)
                        .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
            }
            PatternKind::Address(a) => address.key().eq_ignore_ascii_case(a),
            PatternKind::Glob(g) => {
                glob(g.as_bytes(), address.key().to_ascii_lowercase().as_bytes())
            }
        }
    }
}

/// `*` and `?` over bytes, iteratively (no exponential backtracking).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// An allow list and a deny list.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
}

impl AccessList {
    /// Empty lists.
    pub fn new() -> Self {
        AccessList::default()
    }

    /// Add an allow pattern.
    pub fn allow(mut self, pattern: &str) -> Self {
        self.allow.push(Pattern::new(pattern));
        self
    }

    /// Add a deny pattern.
    pub fn deny(mut self, pattern: &str) -> Self {
        self.deny.push(Pattern::new(pattern));
        self
    }

    /// Whether both lists are empty.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Look `address` up: deny wins over allow.
    pub fn check(&self, address: &Address) -> ListMatch {
        if self.deny.iter().any(|p| p.matches(address)) {
            ListMatch::Denied
        } else if self.allow.iter().any(|p| p.matches(address)) {
            ListMatch::Allowed
        } else {
            ListMatch::Neither
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn pattern_kinds() {
        assert!(Pattern::new("User@Example.com").matches(&a("user@EXAMPLE.com")));
        assert!(!Pattern::new("user@example.com").matches(&a("other@example.com")));
        assert!(Pattern::new("example.com").matches(&a("x@example.com")));
        assert!(Pattern::new("@example.com").matches(&a("x@Example.COM")));
        assert!(!Pattern::new("example.com").matches(&a("x@sub.example.com")));
        assert!(Pattern::new(".example.com").matches(&a("x@sub.example.com")));
        assert!(!Pattern::new(".example.com").matches(&a("x@example.com")));
        assert!(!Pattern::new(".example.com").matches(&a("x@badexample.com")));
        assert!(Pattern::new("*@*.example.com").matches(&a("x@a.b.example.com")));
        assert!(!Pattern::new("*@*.example.com").matches(&a("x@example.com")));
        assert!(Pattern::new("bounce-*@x.org").matches(&a("bounce-123@x.org")));
        assert!(!Pattern::new("bounce-*@x.org").matches(&a("bounce@x.org")));
        assert!(Pattern::new("?@x.org").matches(&a("q@x.org")));
        assert!(!Pattern::new("?@x.org").matches(&a("qq@x.org")));
    }

    #[test]
    fn deny_wins() {
        let list = AccessList::new()
            .allow("example.com")
            .deny("spam@example.com");
        assert_eq!(list.check(&a("spam@example.com")), ListMatch::Denied);
        assert_eq!(list.check(&a("ham@example.com")), ListMatch::Allowed);
        assert_eq!(list.check(&a("ham@example.org")), ListMatch::Neither);
    }

    #[test]
    fn glob_is_linear_on_hostile_patterns() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob(pattern.as_bytes(), text.as_bytes()));
        assert!(glob(b"*", b""));
        assert!(!glob(b"?", b""));
    }
}
