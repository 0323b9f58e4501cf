//! `SHOW CONFIG` rows from the configuration's `Debug` text. Going through
//! `Debug` means every setting — including ones added later — is listed
//! without a table to keep in sync, and secrets are printed exactly as
//! everywhere else: `Secret`'s `Debug` redacts them.

/// (dotted key, value) for every field of a derived-`Debug` struct, nested
/// structs flattened: `Config { pool: PoolConfig { mode: Session } }` gives
/// `("pool.mode", "session")`.
pub fn rows(debug: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut p = Parser {
        s: debug.as_bytes(),
        i: 0,
    };
    p.fields("", &mut out);
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// `Name { a: 1, b: Inner { .. } }` from the name on.
    fn fields(&mut self, prefix: &str, out: &mut Vec<(String, String)>) {
        while let Some(b) = self.peek() {
            self.i += 1;
            if b == b'{' {
                break;
            }
        }
        loop {
            self.skip_spaces();
            match self.peek() {
                None => return,
                Some(b'}') => {
                    self.i += 1;
                    return;
                }
                _ => {}
            }
            let start = self.i;
            while self.peek().is_some_and(|b| b != b':') {
                self.i += 1;
            }
            let name = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
            self.i += 1;
            self.skip_spaces();
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            };
            if self.at_struct() {
                self.fields(&key, out);
            } else {
                let v = self.value();
                out.push((key, clean(&v)));
            }
            self.skip_spaces();
            if self.peek() == Some(b',') {
                self.i += 1;
            }
        }
    }

    /// `TypeName {` ahead?
    fn at_struct(&self) -> bool {
        let rest = &self.s[self.i.min(self.s.len())..];
        let n = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        n > 0 && rest[0].is_ascii_uppercase() && rest[n..].starts_with(b" {")
    }

    /// Raw text up to the `,` or `}` that ends this value.
    fn value(&mut self) -> String {
        let start = self.i;
        let (mut depth, mut quoted) = (0usize, false);
        while let Some(b) = self.peek() {
            if quoted {
                match b {
                    b'\\' => self.i += 1,
                    b'"' => quoted = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => quoted = true,
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' if depth > 0 => depth -= 1,
                    b',' | b'}' if depth == 0 => break,
                    _ => {}
                }
            }
            self.i += 1;
        }
        let end = self.i.min(self.s.len());
        String::from_utf8_lossy(&self.s[start..end])
            .trim()
            .to_owned()
    }
}

/// `Some(x)` → x, `None` → "", `"text"` → text, `Session` → session.
fn clean(v: &str) -> String {
    if v == "None" {
        return String::new();
    }
    if let Some(inner) = v.strip_prefix("Some(").and_then(|s| s.strip_suffix(')')) {
        return clean(inner);
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return v[1..v.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\");
    }
    let bare = v.bytes().all(|b| b.is_ascii_alphanumeric());
    if bare && v.starts_with(|c: char| c.is_ascii_uppercase()) {
        let mut out = String::new();
        for (i, c) in v.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        return out;
    }
    v.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_structs_flatten_to_dotted_keys() {
        let dbg = r#"Config { listen_addr: 127.0.0.1:6432, backend: BackendConfig { url: <redacted>, cert: Some("/a, b}.pem") }, pool: PoolConfig { mode: Session, tenants: {"acme": T { a: 1 }}, list: [1, 2] }, log: LogConfig { level: "info", format: Text, on: OnRevoke }, tls_mode: VerifyFull, none: None }"#;
        let rows = rows(dbg);
        let get = |k: &str| {
            rows.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{k} missing from {rows:?}"))
        };
        assert_eq!(get("listen_addr"), "127.0.0.1:6432");
        assert_eq!(get("backend.url"), "<redacted>");
        assert_eq!(get("backend.cert"), "/a, b}.pem");
        assert_eq!(get("pool.mode"), "session");
        assert_eq!(get("pool.tenants"), r#"{"acme": T { a: 1 }}"#);
        assert_eq!(get("pool.list"), "[1, 2]");
        assert_eq!(get("log.level"), "info");
        assert_eq!(get("tls_mode"), "verify_full");
        assert_eq!(get("none"), "");
        assert_eq!(rows.len(), 11);
    }

    #[test]
    fn the_real_config_lists_every_section_and_no_secret() {
        let mut cfg = crate::config::Config::default();
        cfg.backend.secret.0 = "super-secret-value".into();
        cfg.admin.password.0 = "admin-password-value".into();
        let rows = rows(&format!("{cfg:?}"));
        let text = format!("{rows:?}");
        assert!(!text.contains("super-secret") && !text.contains("admin-password"));
        for key in [
            "listen_addr",
            "pool.pool_size",
            "admin.metrics_max_tenants",
            "log.format",
        ] {
            assert!(rows.iter().any(|(k, _)| k == key), "{key} missing: {text}");
        }
    }
}
