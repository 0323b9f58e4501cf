//! A connection lent to one client, and how it comes back.

use super::ServerConn;
use super::slots::Permit;
use crate::protocol::TxStatus;

/// A connection lent to one client, with the right to hold it.
pub struct Checkout {
    pub conn: Box<ServerConn>,
    pub(super) permit: Permit,
}

/// How the client left the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Every request was answered; the session is at ReadyForQuery.
    Ready(TxStatus),
    /// Something was in flight (a query, a COPY, an unsynced extended
    /// query) or the server failed: the connection cannot be proven clean.
    Dirty,
}

impl Checkout {
    /// Puts the connection back as it is: transaction mode, between
    /// transactions, when the proxy knows nothing session-scoped was done.
    pub fn release_idle(self) {
        // (Reseeding pins its client, which never comes here: kept for
        // safety, at the cost of one load.)
        if !self.seeded() {
            self.permit.give_back(self.conn);
        }
    }

    /// A client seeded random() here, which no reset undoes: the caller
    /// drops the connection (counted here).
    fn seeded(&self) -> bool {
        if self.conn.reseeded {
            metrics::counter!("pgtenant_server_discards_total", "reason" => "random_seed")
                .increment(1);
            tracing::debug!("server connection closed: its client set the random seed");
        }
        self.conn.reseeded
    }

    /// Resets the connection and puts it back, or closes it.
    pub async fn release(mut self, how: Release) {
        let Release::Ready(status) = how else {
            metrics::counter!("pgtenant_server_discards_total", "reason" => "dirty").increment(1);
            return; // dropped: socket closed, budget and permit freed
        };
        if self.seeded() {
            return;
        }
        match self.conn.reset(status).await {
            Ok(()) => self.permit.give_back(self.conn),
            Err(e) => {
                metrics::counter!("pgtenant_server_discards_total", "reason" => "reset_failed")
                    .increment(1);
                tracing::warn!(error = %e, "server connection failed its reset; closed");
            }
        }
    }
}
