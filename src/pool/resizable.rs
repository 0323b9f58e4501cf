//! A semaphore whose size can change while permits are out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Resizable {
    sem: Arc<Semaphore>,
    size: AtomicUsize,
}

impl Resizable {
    /// Large enough never to bind, small enough for tokio's semaphore.
    pub const UNLIMITED: usize = Semaphore::MAX_PERMITS / 2;

    pub fn new(size: usize) -> Resizable {
        Resizable {
            sem: Arc::new(Semaphore::new(size)),
            size: AtomicUsize::new(size),
        }
    }

    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.sem.clone().try_acquire_owned().ok()
    }

    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        self.sem
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    /// Grows at once; shrinks by forgetting free permits now and the rest
    /// as their holders give them back.
    pub fn resize(&self, new: usize) {
        let old = self.size.swap(new, Ordering::Relaxed);
        if new > old {
            self.sem.add_permits(new - old);
        } else if old > new {
            let missing = (old - new) - self.sem.forget_permits(old - new);
            if missing > 0 {
                let sem = self.sem.clone();
                tokio::spawn(async move {
                    if let Ok(p) = sem.acquire_many_owned(missing as u32).await {
                        p.forget();
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shrinks_as_permits_come_back() {
        let r = Resizable::new(3);
        let a = r.try_acquire().unwrap();
        let b = r.try_acquire().unwrap();
        r.resize(1);
        assert!(r.try_acquire().is_none(), "2 out, size 1");
        drop(a);
        tokio::task::yield_now().await;
        assert!(r.try_acquire().is_none(), "1 out, size 1");
        drop(b);
        tokio::task::yield_now().await;
        assert!(r.try_acquire().is_some());
        r.resize(4);
        assert_eq!(r.size(), 4);
    }
}
