//! Transaction mode's `DEALLOCATE name` of a client's statement. The
//! server knows the statement by the proxy's name (or not at all: it is
//! prepared where used), so a `DEALLOCATE` sent as it is would fail with
//! 26000 and leave the client's name in place. The proxy runs an empty
//! query in its place and answers for it: a Query is sent as an empty
//! Query; through the extended protocol (libpq's `PQsendQueryParams`, what
//! psycopg 3 sends in pipeline mode with libpq before 17), the portal is
//! bound to an empty statement of the proxy's, and its Execute is the
//! `DEALLOCATE`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use postgres_protocol::message::frontend;

use super::super::downstream::{Downstream, in_failed_transaction};
use super::super::expect::{Expect, Reply};
use super::super::prepared::{Lookup, Statement, StatementCache, deallocated_name};
use super::named::Renamed;
use super::{Upstream, cstr};
use crate::protocol::{self, TxStatus, tag};

/// PostgreSQL's answer to a `DEALLOCATE` of a name the client lacks.
#[cold]
fn does_not_exist(name: &str) -> Bytes {
    protocol::error(
        "26000",
        &format!("prepared statement \"{name}\" does not exist"),
        None,
    )
}

impl Upstream {
    /// A client's Query: a `DEALLOCATE` of one of its statements is sent as
    /// an empty query, answered as the `DEALLOCATE`, and the statement
    /// goes. Returns whether it was one. (In a failed transaction the
    /// answer is PostgreSQL's 25P02 and the statement stays; behind other
    /// queries, whether it will be one is known at the answer.)
    #[inline]
    pub(super) fn deallocate_query(
        &mut self,
        sql: &[u8],
        status: TxStatus,
        q: &mut VecDeque<Expect>,
    ) -> bool {
        if status == TxStatus::Failed && q.is_empty() {
            return false; // the server's 25P02 is the answer
        }
        let Some(name) = deallocated_name(sql) else {
            return false;
        };
        let Some(st) = self.take_statement(&name, q) else {
            return false; // the server's 26000 is the answer
        };
        frontend::query("", &mut self.out).expect("no NUL in constant");
        let kept = (!q.is_empty()).then(|| Arc::new((name, st)));
        q.push_back(Expect::Deallocate(Reply::UntilReady, kept));
        true
    }

    /// The client has statement `name` once the replies awaited in `q`
    /// are in: none of them is a `DEALLOCATE ALL` or `DISCARD ALL` that
    /// may take it first (PostgreSQL would then have none, and the
    /// server's answer to the `DEALLOCATE`, 26000 or a skip, is the right
    /// one). Read to the end: a `DEALLOCATE` is rare, a pipeline may be
    /// long.
    fn has_after(&self, name: &str, q: &VecDeque<Expect>) -> bool {
        self.statements.get(name).is_some_and(|st| {
            !q.iter()
                .any(|e| matches!(*e, Expect::DropsAll(_, upto) if upto >= st.kept))
        })
    }

    /// Forgets the client's statement `name` for a `DEALLOCATE` sent now,
    /// if it has one then (see [`Upstream::has_after`]).
    fn take_statement(&mut self, name: &str, q: &VecDeque<Expect>) -> Option<Statement> {
        self.has_after(name, q)
            .then(|| self.forget_statement(name))?
    }

    /// The statement the text of a Parse (its body after the name) would
    /// deallocate, if the client will have one of that name when the
    /// server reaches it (see [`Upstream::has_after`]); and the body of a
    /// Parse of the empty query with the same parameter types (a client
    /// may declare some, and bind values for them). Read only for a
    /// statement whose effect says it deallocates one.
    pub(super) fn deallocates(
        &self,
        parse_body: &[u8],
        q: &VecDeque<Expect>,
    ) -> Option<(String, Vec<u8>)> {
        let sql = cstr(parse_body);
        let name = deallocated_name(sql).filter(|n| self.has_after(n, q))?;
        let types = parse_body.get(sql.len() + 1..)?;
        Some((name, [&[0][..], types].concat()))
    }

    /// A Bind of a `DEALLOCATE` of the client's statement `target` (see
    /// [`Upstream::deallocates`]): the portal is bound to the proxy's empty
    /// statement instead (`empty_query`, prepared first where missing),
    /// unless that would forget a portal still to run; its Execute
    /// is answered as the `DEALLOCATE` (see [`Upstream::run_deallocate`]).
    /// Described, the portal gives NoData, as a `DEALLOCATE`'s does; in a
    /// failed transaction the Bind gets the server's 25P02, as one of the
    /// `DEALLOCATE` would.
    #[cold]
    pub(super) fn bind_deallocate(
        &mut self,
        prefix: &[u8],
        rest: &[u8],
        (target, empty_query): (String, Vec<u8>),
        cache: &mut StatementCache,
        down: &mut Downstream,
    ) -> Option<Renamed> {
        let portal = &prefix[..prefix.len() - 1];
        if !self.portal_room(portal) {
            return None; // the server's 26000: no portal forgotten unseen
        }
        let empty = Statement::from_parse_body(&empty_query);
        if !matches!(cache.lookup(&empty), Lookup::Present | Lookup::Pending) {
            self.prepare(&empty, cache, &mut down.expect, None);
        }
        self.write_naming(tag::BIND, prefix, empty.server_name.as_bytes(), rest);
        self.track_portal(portal, false, false, Some(target.into()));
        Some(Renamed::Yes)
    }

    /// The Execute (`frame`) of the tracked portal `i`, which
    /// [`Upstream::bind_deallocate`] bound: the client's statement `name`
    /// goes now, and comes back if the server skips the Execute. In a
    /// failed transaction, run before, or gone since the Bind (closed, or
    /// dropped by a `DEALLOCATE ALL` still awaited), the answer is
    /// PostgreSQL's error, in its order of checks. (A transaction that
    /// fails between the Bind and the Execute, in one pipeline with a Sync
    /// between them, is seen too late: the empty portal runs.)
    #[cold]
    pub(super) fn run_deallocate(
        &mut self,
        frame: &[u8],
        i: usize,
        name: &str,
        down: &mut Downstream,
    ) {
        // Failed for certain: nothing awaited may end it (a Sync, a Query,
        // an Execute of ROLLBACK) or fail the Execute first.
        let may_change = |e: &Expect| {
            e.reply()
                .is_some_and(|r| r.ends_at_ready() || r == Reply::Execute)
        };
        if down.status == TxStatus::Failed && !down.expect.iter().any(may_change) {
            return self.refuse_execute(in_failed_transaction(), down);
        }
        if self.portal_ran(i) {
            let msg = format!("portal \"{}\" cannot be run", self.portal_name(i));
            return self.refuse_execute(protocol::error("55000", &msg, None), down);
        }
        let Some(st) = self.take_statement(name, &down.expect) else {
            return self.refuse_execute(does_not_exist(name), down);
        };
        self.out.extend_from_slice(frame);
        let kept = Arc::new((name.to_owned(), st));
        down.expect
            .push_back(Expect::Deallocate(Reply::Execute, Some(kept)));
    }

    /// Answers an Execute with `err`, through an Execute of a portal that
    /// does not exist: the server fails too, and skips what the client
    /// sent up to its Sync.
    fn refuse_execute(&mut self, err: Bytes, down: &mut Downstream) {
        frontend::execute("pgt_no_such_portal", 0, &mut self.out).expect("no NUL in constant");
        down.expect.push_back(Expect::Refused(Reply::Execute, err));
    }
}
