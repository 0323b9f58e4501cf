//! The firewall, as the relay sees it: a verdict per SQL text, turned into
//! the ErrorResponse the client gets (enforce), a log line (monitor), or
//! nothing (off).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::upstream::Inspector;
use crate::config::FirewallMode;
use crate::firewall::{Firewall, rules};
use crate::lexical::Lexed;
use crate::protocol::{self, Severity};

pub struct TenantFirewall<'a> {
    pub firewall: &'a Arc<Firewall>,
    pub schema: &'a str,
    pub mode: FirewallMode,
    /// The client's, named as the parent of what is logged here: the
    /// relay runs outside it.
    pub span: &'a tracing::Span,
}

impl Inspector for TenantFirewall<'_> {
    fn reads_text(&self) -> bool {
        self.mode != FirewallMode::Off
    }

    fn repeat(&self, lexical: bool) -> bool {
        match self.mode {
            FirewallMode::Off => true,
            // Each statement that would be refused is logged and counted.
            FirewallMode::Monitor => false,
            // A firewall that parses everything (tests) parses repeats too.
            FirewallMode::Enforce if lexical && !self.firewall.prechecks() => false,
            FirewallMode::Enforce => {
                self.firewall.note_repeat();
                true
            }
        }
    }

    fn inspect(&self, sql: &[u8], lexed: &Lexed) -> Result<(), Bytes> {
        self.verdict(sql, lexed, true)
            .expect("a verdict that may parse is always reached")
    }

    fn inspect_cheap(&self, sql: &[u8], lexed: &Lexed) -> Option<Result<(), Bytes>> {
        self.verdict(sql, lexed, false)
    }

    fn enforces(&self) -> bool {
        self.mode == FirewallMode::Enforce
    }

    fn detached(&self) -> Option<Box<dyn Inspector>> {
        (self.mode != FirewallMode::Off).then(|| {
            Box::new(Detached {
                firewall: self.firewall.clone(),
                schema: self.schema.into(),
                mode: self.mode,
                span: self.span.clone(),
            }) as Box<dyn Inspector>
        })
    }

    fn function_call(&self, oid: Option<u32>) -> Result<(), Bytes> {
        if self.mode == FirewallMode::Off || oid.is_some_and(rules::is_fastpath_function) {
            return Ok(());
        }
        let message = match oid {
            Some(o) => format!(
                "pgtenant: function_call: the function-call message may call only large-object \
                 functions, not the function with OID {o}"
            ),
            None => "pgtenant: function_call: malformed function-call message".to_owned(),
        };
        self.refuse(
            rules::FUNCTION_CALL,
            &message,
            rules::hint(rules::FUNCTION_CALL),
        )
    }
}

/// A [`TenantFirewall`] that owns its parts, for another thread.
struct Detached {
    firewall: Arc<Firewall>,
    schema: Box<str>,
    mode: FirewallMode,
    span: tracing::Span,
}

impl Inspector for Detached {
    fn inspect(&self, sql: &[u8], lexed: &Lexed) -> Result<(), Bytes> {
        let fw = TenantFirewall {
            firewall: &self.firewall,
            schema: &self.schema,
            mode: self.mode,
            span: &self.span,
        };
        fw.inspect(sql, lexed)
    }
}

impl TenantFirewall<'_> {
    /// [`Inspector::inspect`]; unless `parse`, None where the verdict
    /// needs a parse.
    fn verdict(&self, sql: &[u8], lexed: &Lexed, parse: bool) -> Option<Result<(), Bytes>> {
        if self.mode == FirewallMode::Off {
            return Some(Ok(()));
        }
        // ASCII is valid UTF-8: the pre-check's verdict needs no decoding.
        if !lexed.non_ascii && self.firewall.clears(lexed) {
            return Some(Ok(()));
        }
        // The firewall reads UTF-8; text in another client encoding can't
        // be checked, so it is refused rather than waved through.
        let verdict = match std::str::from_utf8(sql) {
            Ok(sql) if parse => self.firewall.check_lexed(sql, lexed, self.schema),
            Ok(sql) => self.firewall.check_cheap(sql, lexed, self.schema)?,
            Err(_) => {
                return Some(self.refuse(
                    rules::ENCODING,
                    "pgtenant: encoding: the statement is not valid UTF-8",
                    "set client_encoding to UTF8; the firewall checks UTF-8 text",
                ));
            }
        };
        Some(match verdict {
            Ok(()) => Ok(()),
            Err(r) => self.refuse(r.rule, &r.message, &r.hint),
        })
    }

    /// What a refusal becomes: a log line (monitor) or the client's
    /// ErrorResponse (enforce). Counted in both modes, whichever rule.
    fn refuse(&self, rule: &'static str, message: &str, hint: &str) -> Result<(), Bytes> {
        metrics::counter!("pgtenant_firewall_verdicts_total", "rule" => rule, "outcome" => "refused")
            .increment(1);
        if self.mode == FirewallMode::Monitor {
            let message = crate::error::one_line(message);
            tracing::warn!(parent: self.span, rule, "firewall (monitor): would refuse: {message}");
            metrics::counter!("pgtenant_firewall_monitored_total", "rule" => rule).increment(1);
            return Ok(());
        }
        tracing::info!(parent: self.span, rule, "firewall refused a statement");
        let mut buf = BytesMut::new();
        let code = rules::sqlstate(rule);
        protocol::error_response(&mut buf, Severity::Error, code, message, Some(hint));
        Err(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::Policy;
    use crate::lexical::scan;

    fn inspect(mode: FirewallMode, sql: &[u8]) -> Result<(), Bytes> {
        let firewall = Arc::new(Firewall::new(Policy::default(), 10));
        let fw = TenantFirewall {
            firewall: &firewall,
            schema: "tenant_a",
            mode,
            span: &tracing::Span::none(),
        };
        // Both ways the relay reads words: session and transaction mode.
        let (session, tx) = (
            fw.inspect(sql, &scan(sql, false)),
            fw.inspect(sql, &scan(sql, true)),
        );
        assert_eq!(session, tx, "{sql:?}");
        session
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_even_on_the_fast_path() {
        let enforce = FirewallMode::Enforce;
        assert!(inspect(enforce, b"SELECT abalance FROM t WHERE aid = 1").is_ok());
        assert!(inspect(enforce, "SELECT 'é' FROM t".as_bytes()).is_ok());
        let err = inspect(enforce, b"SELECT '\xff' FROM t").unwrap_err();
        assert!(err.windows(5).any(|w| w == b"UTF-8"), "{err:?}");
        // PostgreSQL's own SQLSTATEs for text it can't read.
        assert!(err.windows(6).any(|w| w == b"C22021"), "{err:?}");
        let err = inspect(enforce, b"SELEC x FROM tenant_b.t").unwrap_err();
        assert!(err.windows(6).any(|w| w == b"C42601"), "{err:?}");
        let err = inspect(enforce, b"SELECT x FROM tenant_b.t").unwrap_err();
        assert!(err.windows(6).any(|w| w == b"C42501"), "{err:?}");
        assert!(inspect(enforce, b"SELECT x FROM tenant_b.t").is_err());
        assert!(inspect(FirewallMode::Monitor, b"SELECT '\xff' FROM t").is_ok());
        assert!(inspect(FirewallMode::Off, b"SELECT '\xff' FROM t").is_ok());
    }
}
