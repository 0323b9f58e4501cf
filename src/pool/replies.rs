//! What the proxy reads of a server's messages outside the relay: the
//! rows of its own control queries, and the parameters the server reports.

use bytes::Buf;

use super::server::{ServerError, bad};
use crate::protocol::read_cstr;

pub(super) fn parse_data_row(mut body: &[u8]) -> Result<Vec<String>, ServerError> {
    if body.len() < 2 {
        return Err(bad("short DataRow"));
    }
    let n = body.get_i16();
    let mut cols = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        if body.len() < 4 {
            return Err(bad("short DataRow"));
        }
        let len = body.get_i32();
        if len < 0 {
            cols.push(String::new());
            continue;
        }
        let len = len as usize;
        if body.len() < len {
            return Err(bad("short DataRow"));
        }
        cols.push(String::from_utf8_lossy(&body[..len]).into_owned());
        body.advance(len);
    }
    Ok(cols)
}

/// Applies a ParameterStatus body (`name\0value\0`) to `params`.
pub fn record_param(params: &mut Vec<(String, String)>, body: &[u8]) {
    let Some((name, rest)) = read_cstr(body) else {
        return;
    };
    let Some((value, _)) = read_cstr(rest) else {
        return;
    };
    let (name, value) = (
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(value),
    );
    match params.iter_mut().find(|(n, _)| *n == name) {
        Some(p) => p.1 = value.into_owned(),
        None => params.push((name.into_owned(), value.into_owned())),
    }
}
