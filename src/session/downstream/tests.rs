//! The reply scan, on server bytes made up here: splicing, the proxy's
//! own answers in order, the Syncs a COPY makes the server ignore, a
//! refusal in place of the server's error, large rows streamed.

use super::*;
use bytes::Bytes;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn splice_grows_and_shrinks() {
    let mut b = BytesMut::from(&b"abcdef"[..]);
    splice(&mut b, 2, 1, b"XYZ");
    assert_eq!(&b[..], b"abXYZdef");
    splice(&mut b, 2, 3, b"");
    assert_eq!(&b[..], b"abdef");
}

#[test]
fn reparse_reply_is_dropped_and_synth_inserted_in_order() {
    let mut cache = StatementCache::new(8);
    let mut d = Downstream::new(BytesMut::new());
    d.expect.push_back(Expect::Reparse("pgt_1".into(), 1, None));
    d.expect.push_back(Expect::Parsed(1));
    d.expect.push_back(Expect::Pass(Reply::Bind));
    d.expect.push_back(Expect::Pass(Reply::Sync));
    let mut server = msg(b'1', b"");
    server.extend(msg(b'2', b""));
    server.extend(msg(b'Z', b"I"));
    d.buf.extend_from_slice(&server);
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    let mut want = msg(b'1', b""); // the synthetic one
    want.extend(msg(b'2', b""));
    want.extend(msg(b'Z', b"I"));
    assert_eq!(&d.buf[..d.scanned], &want[..]);
    assert!(d.settled());
}

/// COPY FROM STDIN by Execute: the Sync sent behind it (past a
/// ParseComplete the proxy answers itself) gets no reply; an error
/// during the copy ends it, so the next Sync is expected again.
#[test]
fn a_copy_in_drops_the_syncs_the_server_ignores() {
    let mut cache = StatementCache::new(8);
    let mut d = Downstream::new(BytesMut::new());
    d.expect.push_back(Expect::Pass(Reply::Execute));
    d.expect.push_back(Expect::Parsed(1));
    d.expect.push_back(Expect::Pass(Reply::Sync));
    d.buf.extend_from_slice(&msg(b'G', b"\0\0\0"));
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(d.copy_in);
    assert!(
        d.sync_owed,
        "the Sync that ends the copy's transaction is still to come"
    );
    assert_eq!(d.expect.len(), 2, "{:?}", d.expect);
    assert!(matches!(d.expect[1], Expect::Parsed(_)));
    // The data is refused: the copy is over.
    d.buf.extend_from_slice(&msg(b'E', b"C22P04\0\0"));
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(!d.copy_in);
}

/// The client sent its data, CopyDone and another Sync before the
/// server's CopyInResponse: only the Sync before the CopyDone goes
/// unanswered, and nothing waits for data.
#[test]
fn a_copy_ended_before_it_began_drops_only_the_syncs_before_its_end() {
    let mut cache = StatementCache::new(8);
    let mut d = Downstream::new(BytesMut::new());
    for e in [
        Expect::Pass(Reply::Execute),
        Expect::Pass(Reply::Sync),
        Expect::CopyEnd,
        Expect::Pass(Reply::Sync),
    ] {
        d.expect.push_back(e);
    }
    let mut server = msg(b'G', b"\0\0\0");
    server.extend(msg(b'C', b"COPY 1\0"));
    server.extend(msg(b'Z', b"I"));
    d.buf.extend_from_slice(&server);
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(!d.copy_in);
    assert!(!d.sync_owed, "the Sync after the copy's end was sent");
    assert!(d.settled(), "{:?}", d.expect);
    assert_eq!(&d.buf[..d.scanned], &server[..]);
    // A CopyDone with no COPY to end (the server ignores it) leaves
    // nothing behind.
    d.expect.push_back(Expect::Pass(Reply::Sync));
    d.expect.push_back(Expect::CopyEnd);
    d.buf.extend_from_slice(&msg(b'Z', b"I"));
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(d.settled(), "{:?}", d.expect);
    // No Sync after the copy's end yet: the server waits for one.
    d.expect.extend([
        Expect::Pass(Reply::Execute),
        Expect::Pass(Reply::Sync),
        Expect::CopyEnd,
    ]);
    d.buf.extend_from_slice(&server[..server.len() - 6]);
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(!d.copy_in && d.settled(), "{:?}", d.expect);
    assert!(d.sync_owed);
}

#[test]
fn refused_error_replaces_the_servers_and_skips_to_sync() {
    let mut cache = StatementCache::new(8);
    let mut d = Downstream::new(BytesMut::new());
    let ours = Bytes::from(msg(b'E', b"C42501\0\0"));
    d.expect
        .push_back(Expect::Refused(Reply::Parse, ours.clone()));
    d.expect.push_back(Expect::Pass(Reply::Bind));
    d.expect.push_back(Expect::Pass(Reply::Execute));
    d.expect.push_back(Expect::Pass(Reply::Sync));
    // Arrives in two reads, split inside the error.
    let mut server = msg(b'E', b"C42601\0Msyntax\0\0");
    server.extend(msg(b'Z', b"E"));
    d.buf.extend_from_slice(&server[..7]);
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert_eq!(d.scanned, 0, "held until whole");
    d.buf.extend_from_slice(&server[7..]);
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    let mut want = ours.to_vec();
    want.extend(msg(b'Z', b"E"));
    assert_eq!(&d.buf[..d.scanned], &want[..]);
    assert_eq!(d.status, TxStatus::Failed);
    assert!(d.expect.is_empty());
}

#[test]
fn large_rows_stream_without_being_held() {
    let mut cache = StatementCache::new(8);
    let mut d = Downstream::new(BytesMut::new());
    d.expect.push_back(Expect::Pass(Reply::UntilReady));
    let row = msg(b'D', &vec![7u8; 100_000]);
    d.buf.extend_from_slice(&row[..50_000]);
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert_eq!(d.scanned, 50_000, "partial message bodies are passed on");
    d.buf.extend_from_slice(&row[50_000..]);
    d.buf.extend_from_slice(&msg(b'Z', b"I"));
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(d.settled());
    assert_eq!(d.transactions, 1);
}

/// After an error in the extended protocol the server skips a Query
/// too, up to the next Sync: that Sync's ReadyForQuery is the Query's
/// no longer; without a Sync yet, the client owes one.
#[test]
fn an_error_skips_a_query_up_to_the_sync() {
    let mut cache = StatementCache::new(8);
    let mut d = Downstream::new(BytesMut::new());
    d.expect.extend([
        Expect::Pass(Reply::Parse),
        Expect::Pass(Reply::UntilReady),
        Expect::Pass(Reply::Sync),
    ]);
    let mut server = msg(b'E', b"C42703\0\0");
    server.extend(msg(b'Z', b"I"));
    d.buf.extend_from_slice(&server);
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(d.settled(), "{:?}", d.expect);
    assert!(!d.sync_owed && !d.skipping_to_sync);
    assert_eq!(&d.buf[..d.scanned], &server[..]);

    let mut d = Downstream::new(BytesMut::new());
    d.expect
        .extend([Expect::Pass(Reply::Parse), Expect::Pass(Reply::UntilReady)]);
    d.buf.extend_from_slice(&msg(b'E', b"C42703\0\0"));
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(d.settled(), "{:?}", d.expect);
    assert!(
        d.sync_owed && d.skipping_to_sync,
        "the Sync is still to come"
    );
}

/// A client's statement whose Parse failed, or that a `DEALLOCATE ALL`
/// took, never comes back through a Close of it the server skipped, even
/// when the two answers come in different reads (the client's statements
/// follow at its next batch, in between).
#[test]
fn a_skipped_close_gives_back_only_what_the_server_had() {
    let mut cache = StatementCache::new(8);
    let kept = |n: u64| {
        let mut st = super::super::prepared::Statement::from_parse_body(b"SELECT 1\0\0\0");
        st.kept = n;
        Expect::Closed(Some(std::sync::Arc::new(("s".to_owned(), st))))
    };
    let failed_segment = || {
        let mut b = msg(b'E', b"C42P01\0\0");
        b.extend(msg(b'Z', b"I"));
        b
    };
    let given_back =
        |d: &mut Downstream| -> Vec<u64> { d.undeallocated.drain(..).map(|k| k.1.kept).collect() };
    // 5's Parse fails; a Close of it and of 4 (parsed before) is skipped.
    let mut d = Downstream::new(BytesMut::new());
    d.expect.extend([
        Expect::ParseNamed("pgt_5".into(), 5, 1),
        Expect::Pass(Reply::Sync),
        Expect::Pass(Reply::Bind),
        kept(5),
        kept(4),
        Expect::Pass(Reply::Sync),
    ]);
    d.buf.extend_from_slice(&failed_segment());
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert_eq!(d.unparsed, [5]);
    d.unparsed.clear(); // the client's next batch
    d.buf.extend_from_slice(&failed_segment());
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(d.settled(), "{:?}", d.expect);
    assert_eq!(given_back(&mut d), [4]);
    // DEALLOCATE ALL sent with 6 kept, 7 parsed behind it; a Close of
    // each skipped.
    d.expect.extend([
        Expect::DropsAll(Reply::UntilReady, 6),
        Expect::ParseNamed("pgt_7".into(), 7, 2),
        Expect::Pass(Reply::Sync),
        Expect::Pass(Reply::Bind),
        kept(5),
        kept(7),
        Expect::Pass(Reply::Sync),
    ]);
    let mut ran = msg(b'C', b"DEALLOCATE ALL\0");
    ran.extend(msg(b'Z', b"I"));
    ran.extend(msg(b'1', b""));
    ran.extend(msg(b'Z', b"I"));
    d.buf.extend_from_slice(&ran);
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert_eq!(d.dropped_all.take(), Some(6));
    d.buf.extend_from_slice(&failed_segment());
    d.scan(&mut cache, &mut ServerParams::default()).unwrap();
    assert!(d.settled(), "{:?}", d.expect);
    assert_eq!(given_back(&mut d), [7]);
}
