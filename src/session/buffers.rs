//! Server-reply buffers lent to sessions while they hold a server
//! connection.
//!
//! In transaction mode a client holds a connection only during its
//! transactions, so it needs a full-size reply buffer only then. Handing
//! the buffer back between transactions keeps ten thousand idle clients
//! from holding 16 KiB each, and taking it from this free list instead of
//! the allocator keeps a busy client's transactions allocation-free (a
//! 16 KiB allocation costs a few hundred instructions; this costs a lock).

use parking_lot::Mutex;

use bytes::BytesMut;

/// What one buffer holds when lent.
pub const CHUNK: usize = 16 * 1024;
/// Buffers kept for reuse (4 MiB); past that, returns go to the allocator.
const KEEP: usize = 256;

#[derive(Default)]
pub struct Buffers {
    free: Mutex<Vec<BytesMut>>,
}

impl Buffers {
    /// An empty buffer with room for at least half a [`CHUNK`].
    pub fn take(&self) -> BytesMut {
        let reused = self.free.lock().pop();
        reused.unwrap_or_else(|| BytesMut::with_capacity(CHUNK))
    }

    /// Takes `buf` back if it is empty and about a chunk (anything else is
    /// dropped: a buffer a large result grew stays no longer than its session).
    pub fn give(&self, mut buf: BytesMut) {
        if !buf.is_empty() || buf.capacity() > 2 * CHUNK {
            return;
        }
        // Consumed bytes are skipped, not reused (see the relay's `reserve`):
        // a buffer that walked far goes back to the front of its allocation
        // (no copy, no allocation); one that can't is dropped.
        if buf.capacity() < CHUNK / 2 && !buf.try_reclaim(CHUNK) {
            return;
        }
        let mut free = self.free.lock();
        if free.len() < KEEP {
            free.push(buf);
        }
    }

    /// Buffers waiting for reuse.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.free.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};

    #[test]
    fn a_returned_buffer_is_lent_again_and_goes_back_to_its_front_once_walked_far() {
        let b = Buffers::default();
        let mut buf = b.take();
        assert!(buf.capacity() >= CHUNK);
        let at = buf.as_ptr();
        buf.put_slice(&[7; 100]);
        buf.advance(100); // consumed: the free space now starts past it
        b.give(buf);
        assert_eq!(b.idle(), 1);
        let mut again = b.take();
        assert_eq!(again.as_ptr(), at.wrapping_add(100), "the same allocation");
        assert!(again.is_empty() && again.capacity() >= CHUNK - 100);
        assert_eq!(b.idle(), 0);
        // Walked past half of it: back to its start.
        again.put_slice(&[7; CHUNK - 100 - CHUNK / 4]);
        again.advance(CHUNK - 100 - CHUNK / 4);
        b.give(again);
        let front = b.take();
        assert_eq!(front.as_ptr(), at, "reclaimed to the front");
        assert!(front.capacity() >= CHUNK);
    }

    #[test]
    fn buffers_with_data_or_of_another_size_are_not_kept() {
        let b = Buffers::default();
        let mut full = b.take();
        full.put_u8(1);
        b.give(full);
        b.give(BytesMut::with_capacity(64));
        b.give(BytesMut::with_capacity(8 * CHUNK));
        assert_eq!(b.idle(), 0);
    }

    #[test]
    fn at_most_keep_buffers_are_kept() {
        let b = Buffers::default();
        let lent: Vec<BytesMut> = (0..KEEP + 3).map(|_| b.take()).collect();
        for buf in lent {
            b.give(buf);
        }
        assert_eq!(b.idle(), KEEP);
    }
}
