//! Message framing on the relay's hot path (issue 6).
//!
//! `cargo bench --bench relay -- --warm-up-time 1 --measurement-time 3`
//!
//! The relay never decodes rows: it reads 5-byte headers with
//! `pgtenant::protocol::header` to find message boundaries and watches for
//! ReadyForQuery. These benches run that walk over realistic server
//! responses and client requests, and build the ErrorResponse the proxy
//! sends itself (firewall rejections, pool timeouts).

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgtenant::protocol::{self, HEADER_LEN, Severity, TxStatus, tag};

fn frame(buf: &mut BytesMut, tag: u8, body: &[u8]) {
    buf.put_u8(tag);
    buf.put_i32(body.len() as i32 + 4);
    buf.put_slice(body);
}

/// A text-format DataRow.
fn data_row(cols: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(cols.len() as i16).to_be_bytes());
    for c in cols {
        b.extend_from_slice(&(c.len() as i32).to_be_bytes());
        b.extend_from_slice(c);
    }
    b
}

fn row_description(cols: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(cols.len() as i16).to_be_bytes());
    for c in cols {
        b.extend_from_slice(c.as_bytes());
        b.push(0);
        b.extend_from_slice(&16397i32.to_be_bytes()); // table oid
        b.extend_from_slice(&1i16.to_be_bytes()); // attnum
        b.extend_from_slice(&23i32.to_be_bytes()); // int4
        b.extend_from_slice(&4i16.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    b
}

/// `SELECT * FROM pgbench_accounts` rows (aid, bid, abalance, filler
/// char(84)) until the buffer holds at least `size` bytes, then
/// CommandComplete + ReadyForQuery.
fn accounts_result(size: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(size + 256);
    frame(
        &mut buf,
        b'T',
        &row_description(&["aid", "bid", "abalance", "filler"]),
    );
    let filler = [b' '; 84];
    let mut aid = 1u32;
    while buf.len() < size {
        let a = aid.to_string();
        let b = (aid / 100_000 + 1).to_string();
        frame(
            &mut buf,
            b'D',
            &data_row(&[a.as_bytes(), b.as_bytes(), b"0", &filler]),
        );
        aid += 1;
    }
    frame(&mut buf, b'C', format!("SELECT {}\0", aid - 1).as_bytes());
    frame(&mut buf, tag::READY_FOR_QUERY, b"I");
    buf
}

/// The whole answer to one `pgbench -S` transaction (simple protocol):
/// RowDescription + DataRow + CommandComplete + ReadyForQuery.
fn select_only_response() -> BytesMut {
    let mut buf = BytesMut::new();
    frame(&mut buf, b'T', &row_description(&["abalance"]));
    frame(&mut buf, b'D', &data_row(&[b"-4213"]));
    frame(&mut buf, b'C', b"SELECT 1\0");
    frame(&mut buf, tag::READY_FOR_QUERY, b"I");
    buf
}

/// One `pgbench -S -M extended` request: Parse/Bind/Describe/Execute/Sync.
fn extended_request() -> BytesMut {
    let mut buf = BytesMut::new();
    let sql = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1;\0";
    let mut parse = b"\0".to_vec();
    parse.extend_from_slice(sql);
    parse.extend_from_slice(&0i16.to_be_bytes());
    frame(&mut buf, b'P', &parse);
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&6i32.to_be_bytes());
    bind.extend_from_slice(b"734221");
    bind.extend_from_slice(&0i16.to_be_bytes());
    frame(&mut buf, b'B', &bind);
    frame(&mut buf, b'D', b"P\0");
    frame(&mut buf, b'E', b"\0\0\0\0\0");
    frame(&mut buf, tag::SYNC, b"");
    buf
}

/// The server → client walk of `session::relay` (Downstream::scan): skip
/// bodies, read headers, watch ReadyForQuery's status byte.
fn walk_server(buf: &[u8]) -> (usize, u32, TxStatus) {
    let mut pos = 0;
    let mut msgs = 0;
    let mut status = TxStatus::Idle;
    while let Ok(Some(h)) = protocol::header(&buf[pos..], usize::MAX) {
        if pos + h.frame_len > buf.len() {
            break;
        }
        if h.tag == tag::READY_FOR_QUERY {
            status = TxStatus::from_byte(buf[pos + HEADER_LEN]).expect("valid status");
        }
        pos += h.frame_len;
        msgs += 1;
    }
    (pos, msgs, status)
}

/// The client → server walk (Upstream::scan): complete frames only, count
/// sync points.
fn walk_client(buf: &[u8], max: usize) -> (usize, u32) {
    let mut pos = 0;
    let mut syncs = 0;
    while let Ok(Some(h)) = protocol::header(&buf[pos..], max) {
        if buf.len() - pos < h.frame_len {
            break;
        }
        if matches!(h.tag, tag::QUERY | tag::SYNC | tag::FUNCTION_CALL) {
            syncs += 1;
        }
        pos += h.frame_len;
    }
    (pos, syncs)
}

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing");

    let big = accounts_result(64 * 1024);
    let (_, msgs, _) = walk_server(&big);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function(format!("server_walk_64KiB_{msgs}_datarows"), |b| {
        b.iter(|| walk_server(black_box(&big)))
    });

    let small = select_only_response();
    g.throughput(Throughput::Elements(1));
    g.bench_function("server_walk_select_only_response", |b| {
        b.iter(|| walk_server(black_box(&small)))
    });

    let req = extended_request();
    g.bench_function("client_walk_extended_request", |b| {
        b.iter(|| walk_client(black_box(&req), 256 << 20))
    });

    let q = {
        let mut b = BytesMut::new();
        frame(
            &mut b,
            tag::QUERY,
            b"SELECT abalance FROM pgbench_accounts WHERE aid = 734221;\0",
        );
        b
    };
    g.bench_function("header_single_query", |b| {
        b.iter(|| protocol::header(black_box(&q), 256 << 20))
    });
    g.finish();
}

fn error_response(c: &mut Criterion) {
    let mut g = c.benchmark_group("error_response");
    let mut buf = BytesMut::with_capacity(512);
    g.bench_function("firewall_rejection", |b| {
        b.iter(|| {
            buf.clear();
            protocol::error_response(
                &mut buf,
                Severity::Error,
                black_box("42501"),
                black_box(
                    "pgtenant: statement rejected by rule cross_schema: \
                     relation \"tenant_other.accounts\" is outside schema \"tenant_bench\"",
                ),
                Some(black_box(
                    "Only the tenant's schema and shared schemas can be named.",
                )),
            );
            black_box(buf.len())
        })
    });
    let mut err = BytesMut::new();
    protocol::error_response(
        &mut err,
        Severity::Fatal,
        "53300",
        "no server connection for tenant \"bench\" became free within 5000 ms",
        None,
    );
    g.bench_function("parse_fields", |b| {
        b.iter(|| protocol::ErrorFields::parse(black_box(&err[HEADER_LEN..])))
    });
    g.finish();
}

criterion_group!(benches, framing, error_response);
criterion_main!(benches);
