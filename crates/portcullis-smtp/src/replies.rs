//! SMTP replies the session sends that `portcullis_core::Reply` has no
//! constructor for, and the EHLO reply.

use portcullis_core::{Client, Reply};

use crate::config::SessionConfig;

/// The EHLO reply: host name, then one line per advertised extension
/// (RFC 5321 §4.1.1.1). No enhanced codes on it (RFC 2034 §3).
pub(crate) fn ehlo(config: &SessionConfig, client: &Client) -> Reply {
    use std::fmt::Write;
    let ext = &config.extensions;
    let mut text = config.hostname.clone();
    let mut line = |s: &str| {
        text.push('\n');
        text.push_str(s);
    };
    if ext.pipelining {
        line("PIPELINING");
    }
    if ext.size {
        let mut s = String::from("SIZE ");
        let _ = write!(s, "{}", config.max_message_size);
        line(&s);
    }
    if ext.eight_bit_mime {
        line("8BITMIME");
    }
    if ext.smtputf8 {
        line("SMTPUTF8");
    }
    if ext.chunking {
        line("CHUNKING");
        if ext.binary_mime {
            line("BINARYMIME");
        }
    }
    if ext.starttls && !client.tls {
        line("STARTTLS");
    }
    if ext.auth.any() && (client.tls || config.auth_without_tls) && client.authenticated.is_none() {
        let mut s = String::from("AUTH");
        if ext.auth.plain {
            s.push_str(" PLAIN");
        }
        if ext.auth.login {
            s.push_str(" LOGIN");
        }
        line(&s);
    }
    if ext.enhanced_status_codes {
        line("ENHANCEDSTATUSCODES");
    }
    if ext.dsn {
        line("DSN");
    }
    if ext.requiretls && client.tls {
        line("REQUIRETLS");
    }
    Reply::plain(250, text)
}

/// `500 5.5.2` for a command line ended by a bare LF (RFC 5321 §2.3.8).
pub(crate) fn bare_lf() -> Reply {
    Reply::new(500, (5, 5, 2), "Syntax error: bare <LF> received")
}

/// `503 5.5.1` MAIL before HELO/EHLO.
pub(crate) fn need_helo() -> Reply {
    Reply::new(503, (5, 5, 1), "Send HELO/EHLO first")
}

/// `503 5.5.1` AUTH before EHLO.
pub(crate) fn need_ehlo() -> Reply {
    Reply::new(503, (5, 5, 1), "Send EHLO first")
}

/// `503 5.5.1` RCPT/DATA before MAIL.
pub(crate) fn need_mail() -> Reply {
    Reply::new(503, (5, 5, 1), "Need MAIL command first")
}

/// `503 5.5.1` MAIL inside a transaction.
pub(crate) fn nested_mail() -> Reply {
    Reply::new(503, (5, 5, 1), "Nested MAIL command")
}

/// `554 5.5.1` DATA with no accepted recipient (RFC 2920 §3.1).
pub(crate) fn no_valid_recipients() -> Reply {
    Reply::new(554, (5, 5, 1), "No valid recipients")
}

/// `503 5.5.1` STARTTLS under TLS (RFC 3207 §4).
pub(crate) fn already_tls() -> Reply {
    Reply::new(503, (5, 5, 1), "TLS already active")
}

/// `220 2.0.0` STARTTLS accepted.
pub(crate) fn ready_for_tls() -> Reply {
    Reply::new(220, (2, 0, 0), "Ready to start TLS")
}

/// `503 5.5.1` a second AUTH (RFC 4954 §4).
pub(crate) fn already_authenticated() -> Reply {
    Reply::new(503, (5, 5, 1), "Already authenticated")
}

/// `504 5.5.4` unknown SASL mechanism (RFC 4954 §4).
pub(crate) fn unknown_mechanism() -> Reply {
    Reply::new(504, (5, 5, 4), "Unrecognized authentication type")
}

/// `501 5.7.0` the client cancelled AUTH with `*` (RFC 4954 §4).
pub(crate) fn auth_cancelled() -> Reply {
    Reply::new(501, (5, 7, 0), "Authentication cancelled")
}

/// `334 VXNlcm5hbWU6` ("Username:").
pub(crate) fn login_username() -> Reply {
    Reply::plain(334, "VXNlcm5hbWU6")
}

/// `334 UGFzc3dvcmQ6` ("Password:").
pub(crate) fn login_password() -> Reply {
    Reply::plain(334, "UGFzc3dvcmQ6")
}

/// `501 5.5.4` a parameter given twice.
pub(crate) fn duplicate_parameter() -> Reply {
    Reply::new(501, (5, 5, 4), "Duplicate parameter")
}

/// `252 2.5.2` VRFY (RFC 5321 §3.5.3: do not confirm, do not deny).
pub(crate) fn cannot_vrfy() -> Reply {
    Reply::new(
        252,
        (2, 5, 2),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

/// `502 5.5.1` EXPN is not offered (RFC 5321 §3.5.2 allows it).
pub(crate) fn expn_disabled() -> Reply {
    Reply::new(502, (5, 5, 1), "EXPN not available")
}

/// `214 2.0.0` HELP.
pub(crate) fn help() -> Reply {
    Reply::new(
        214,
        (2, 0, 0),
        "See RFC 5321 https://www.rfc-editor.org/rfc/rfc5321",
    )
}
