//! What the proxy expects the server to answer, in order.
//!
//! The server answers extended-protocol messages strictly in order, so a
//! queue with one entry per message that gets a reply is enough to know
//! where each reply ends. That is what lets the proxy add messages of its
//! own (a re-Parse on another connection), answer some itself (a Parse the
//! connection already has), and swap an error of its own in (a refused
//! statement) without the client noticing anything but the intended reply.

use bytes::Bytes;

/// Which client message a reply belongs to; decides which tag ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Parse,
    Bind,
    Close,
    Describe,
    Execute,
    /// Query and FunctionCall: answered up to ReadyForQuery.
    UntilReady,
    /// Sync: answered with ReadyForQuery. Told apart from a Query: after
    /// an error in the extended protocol the server skips a Query too, up
    /// to the next Sync.
    Sync,
}

impl Reply {
    /// Does a server message with `tag` finish this reply?
    pub fn ended_by(self, tag: u8) -> bool {
        match self {
            Reply::Parse => tag == b'1',
            Reply::Bind => tag == b'2',
            Reply::Close => tag == b'3',
            // 't' (ParameterDescription) comes first for a statement.
            Reply::Describe => matches!(tag, b'T' | b'n'),
            Reply::Execute => matches!(tag, b'C' | b'I' | b's'),
            Reply::UntilReady | Reply::Sync => tag == b'Z',
        }
    }

    /// Answered up to ReadyForQuery (a Sync, Query or FunctionCall).
    pub fn ends_at_ready(self) -> bool {
        matches!(self, Reply::UntilReady | Reply::Sync)
    }

    /// After an error the server skips to the next Sync; only the
    /// extended-protocol messages before it are affected.
    pub fn is_extended(self) -> bool {
        !self.ends_at_ready()
    }
}

#[derive(Debug, Clone)]
pub enum Expect {
    /// A client message: its reply passes through.
    Pass(Reply),
    /// A Parse the proxy sent for a client's named statement: its
    /// ParseComplete is dropped (an error still passes: the client needs it).
    /// Holds the statement's backend name, the number of the Parse in
    /// the connection's cache (see `StatementCache::answered`) and, for a
    /// statement no server has read for the client (`Statement::unproven`),
    /// the number the session kept it under: parsed, it is proven.
    Reparse(std::sync::Arc<str>, u64, Option<u64>),
    /// A Close the proxy sent to evict a statement: CloseComplete dropped.
    Evict,
    /// The proxy answers itself, once every earlier reply has been
    /// delivered: a client's Parse of a named statement the connection
    /// already has (transaction mode) gets ParseComplete. The number is
    /// the one the session kept the client's statement under: skipped by
    /// the server (an error before it in the pipeline), the statement
    /// goes, as PostgreSQL would not have it (see `Downstream::unparsed`).
    Parsed(u64),
    /// A client's Close of its named statement (transaction mode), answered
    /// with CloseComplete as `Parsed` is. Pipelined behind messages that
    /// may fail, the name and statement to give back if the server skips
    /// to Sync, where PostgreSQL would keep the statement (see
    /// `Downstream::undeallocated`).
    Closed(Option<std::sync::Arc<(String, super::prepared::Statement)>>),
    /// A refused statement, sent to the server as a statement that fails
    /// to parse so the server's transaction state follows; the server's
    /// error is replaced by this one.
    Refused(Reply, Bytes),
    /// A client's Parse of a named statement under its backend name, with
    /// the number the session kept it under (as in `Parsed`) and the
    /// Parse's number in the connection's cache (as in `Reparse`): if it
    /// fails or is skipped, the client's statement goes too.
    ParseNamed(std::sync::Arc<str>, u64, u64),
    /// A Query of the proxy's own (the client's settings on a connection):
    /// its whole reply is dropped; an error in it ends the session.
    Hidden,
    /// The proxy's query that gives back startup settings a RESET took:
    /// as Hidden, but an error in it (a cancel, the client's own
    /// `statement_timeout`) is dropped too, and the session goes on.
    Restore,
    /// A client's `DEALLOCATE name` of a statement the proxy keeps, sent as
    /// an empty query (a Query, or the Execute of a portal bound to an
    /// empty statement): its EmptyQueryResponse becomes the CommandComplete
    /// of a DEALLOCATE; a Query's ReadyForQuery passes. Pipelined behind
    /// other messages it may meet a failed transaction, which runs no
    /// DEALLOCATE, or be skipped: then the name and statement to give back
    /// (see `Downstream::undeallocated`).
    Deallocate(
        Reply,
        Option<std::sync::Arc<(String, super::prepared::Statement)>>,
    ),
    /// A message of the proxy's own inside a client's pipeline (the restore
    /// of startup settings behind a reset): its reply is dropped; an error
    /// passes, as the server then skips the client's messages up to Sync.
    Quiet(Reply),
    /// A client's Query, or Execute, of `DEALLOCATE ALL` or `DISCARD ALL`:
    /// passes as `Pass`, and its CommandComplete, if the statement ran,
    /// drops the client's statements kept up to this number (see
    /// `Downstream::dropped_all`).
    DropsAll(Reply, u64),
    /// The client's unnamed statement parsed again, on a connection that
    /// lacks it (see `Upstream::reparse_unnamed`): ParseComplete dropped,
    /// an error passes.
    ReparseUnnamed,
    /// Where the client ended a COPY (CopyDone, CopyFail) the server had
    /// not yet started: the client's Syncs between the COPY's Execute and
    /// here are ones the server will ignore (see `Downstream::copy_started`).
    /// No reply; dropped when it reaches the front.
    CopyEnd,
}

impl Expect {
    /// The answer the proxy gives itself in place of the server's.
    pub fn synth(&self) -> Option<&'static [u8]> {
        match self {
            Expect::Parsed(_) => Some(b"1\0\0\0\x04"),
            Expect::Closed(_) => Some(b"3\0\0\0\x04"),
            _ => None,
        }
    }

    pub fn reply(&self) -> Option<Reply> {
        match self {
            Expect::Pass(r)
            | Expect::Refused(r, _)
            | Expect::DropsAll(r, _)
            | Expect::Quiet(r)
            | Expect::Deallocate(r, _) => Some(*r),
            Expect::Reparse(..) | Expect::ParseNamed(..) | Expect::ReparseUnnamed => {
                Some(Reply::Parse)
            }
            Expect::Evict => Some(Reply::Close),
            Expect::Hidden | Expect::Restore => Some(Reply::UntilReady),
            Expect::Parsed(_) | Expect::Closed(_) | Expect::CopyEnd => None,
        }
    }
}
