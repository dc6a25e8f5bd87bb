//! The change feed of a site: every change the engine applies (local
//! commands, ops from peers, merges, expiry, flushes), fanned out to
//! subscribers.
//!
//! The engine hands the feed the changes of each call before the call
//! returns ([`Engine::set_change_sink`]), under the hold of the engine that
//! made them, so whoever drives the engine (a client command, the QUIC
//! replication driver applying a peer's ops, the housekeeping's expiry)
//! publishes without doing anything. Each subscriber has a bounded queue of
//! its own: publishing never waits for a subscriber, and one that falls
//! behind gets [`Change::Lagged`] (how many changes it missed) in place of
//! them, then the changes that come after. While nobody subscribes the
//! engine records nothing.
//!
//! Std only (no async runtime): the embedded site and chorus-server hold
//! the same feed, and a subscriber may block a thread of its own on
//! [`Subscription::recv`] or poll with [`Subscription::try_recv`].
//!
//! [`Engine::set_change_sink`]: chorus_engine::Engine::set_change_sink

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{RecvError, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use chorus_engine::engine::{Change, ChangeSink};
use chorus_engine::Engine;

/// Changes a subscriber's queue holds by default before it lags.
pub const SUBSCRIBER_QUEUE_DEFAULT: usize = 4096;

/// Changes the engine hands the feed at a time (a command touching more
/// keys is handed over in several batches, none lost).
pub const ENGINE_BATCH: usize = 1024;

/// Fans the changes of one engine out to subscribers (see the module docs).
/// Cheap to clone: clones share the subscribers.
#[derive(Clone)]
pub struct ChangeFeed {
    inner: Arc<Inner>,
}

struct Inner {
    /// The queues of the live subscriptions.
    subscribers: Mutex<Vec<Arc<Queue>>>,
    /// `subscribers.len()`, read without the lock by [`ChangeSink::wanted`].
    count: AtomicUsize,
    /// The queue bound of [`ChangeFeed::subscribe`].
    capacity: usize,
    closed: AtomicBool,
}

/// One subscriber's queue.
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    items: VecDeque<Change>,
    capacity: usize,
    /// Changes dropped since the queue was last full; reported as one
    /// `Lagged` once the items before them were received.
    lost: u64,
    closed: bool,
}

/// Locks, also a mutex a panicking thread left poisoned: the state behind
/// every lock here is valid after any step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl QueueState {
    fn push(&mut self, change: &Change) {
        let weight = match change {
            Change::Lagged(n) => *n,
            _ => 1,
        };
        if self.lost > 0 {
            // Nothing after a loss until the loss is reported: order holds.
            self.lost = self.lost.saturating_add(weight);
        } else if self.items.len() < self.capacity {
            self.items.push_back(change.clone());
        } else {
            self.lost = weight;
        }
    }

    fn take(&mut self) -> Option<Change> {
        if let Some(c) = self.items.pop_front() {
            return Some(c);
        }
        if self.lost > 0 {
            let n = std::mem::take(&mut self.lost);
            return Some(Change::Lagged(n));
        }
        None
    }
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed::new(SUBSCRIBER_QUEUE_DEFAULT)
    }
}

impl ChangeFeed {
    /// A feed whose subscribers each queue up to `capacity` changes (at
    /// least 1) before they lag.
    pub fn new(capacity: usize) -> ChangeFeed {
        ChangeFeed {
            inner: Arc::new(Inner {
                subscribers: Mutex::new(Vec::new()),
                count: AtomicUsize::new(0),
                capacity: capacity.max(1),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Makes this feed the engine's change sink: from now on the changes of
    /// every engine call reach the subscribers before the call returns.
    pub fn attach(&self, engine: &mut Engine) {
        engine.set_change_sink(Arc::new(self.clone()), ENGINE_BATCH);
    }

    /// A new subscriber, with the feed's queue bound: it receives the
    /// changes published from now on. Call it with the engine held to know
    /// exactly which writes it will see (the embedded site's and the
    /// server's `subscribe` do).
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_with_capacity(self.inner.capacity)
    }

    /// [`ChangeFeed::subscribe`] with a queue of `capacity` changes (at
    /// least 1).
    pub fn subscribe_with_capacity(&self, capacity: usize) -> Subscription {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                capacity: capacity.max(1),
                lost: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let mut subs = lock(&self.inner.subscribers);
        if self.inner.closed.load(Ordering::Acquire) {
            lock(&queue.state).closed = true;
        } else {
            subs.push(Arc::clone(&queue));
            self.inner.count.store(subs.len(), Ordering::Release);
        }
        Subscription {
            queue,
            feed: Arc::downgrade(&self.inner),
        }
    }

    /// Live subscriptions.
    pub fn subscribers(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }

    /// Queues `changes`, in order, for every subscriber; never waits for
    /// one (a full queue drops them and reports [`Change::Lagged`]).
    pub fn publish(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let subs = lock(&self.inner.subscribers);
        for q in subs.iter() {
            let mut st = lock(&q.state);
            for c in changes {
                st.push(c);
            }
            drop(st);
            q.ready.notify_all();
        }
    }

    /// Ends the feed: subscribers receive what is queued, then
    /// `Disconnected`; later subscriptions are closed at once.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Inner {
    fn close(&self) {
        let mut subs = lock(&self.subscribers);
        self.closed.store(true, Ordering::Release);
        for q in subs.drain(..) {
            lock(&q.state).closed = true;
            q.ready.notify_all();
        }
        self.count.store(0, Ordering::Release);
    }
}

impl Drop for Inner {
    /// The last handle of the feed is gone (the engine and its site with
    /// it): nothing will be published again.
    fn drop(&mut self) {
        self.close();
    }
}

impl ChangeSink for ChangeFeed {
    fn wanted(&self) -> bool {
        self.inner.count.load(Ordering::Relaxed) > 0
    }

    fn publish(&self, changes: &mut Vec<Change>) {
        ChangeFeed::publish(self, changes);
    }
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("subscribers", &self.subscribers())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

/// One subscriber of a [`ChangeFeed`]: its changes in the order they were
/// applied, [`Change::Lagged`] where its queue overflowed. Dropping it
/// unsubscribes.
pub struct Subscription {
    queue: Arc<Queue>,
    feed: Weak<Inner>,
}

impl Subscription {
    /// The next change, waiting for one; `Err` once the feed is closed (the
    /// site stopped) and every queued change was received.
    pub fn recv(&self) -> Result<Change, RecvError> {
        let mut st = lock(&self.queue.state);
        loop {
            if let Some(c) = st.take() {
                return Ok(c);
            }
            if st.closed {
                return Err(RecvError);
            }
            st = self.queue.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next change, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Change, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = lock(&self.queue.state);
        loop {
            if let Some(c) = st.take() {
                return Ok(c);
            }
            if st.closed {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            st = self
                .queue
                .ready
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The next change if one is queued, without waiting.
    pub fn try_recv(&self) -> Result<Change, TryRecvError> {
        let mut st = lock(&self.queue.state);
        match st.take() {
            Some(c) => Ok(c),
            None if st.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Changes queued and not received yet (a pending `Lagged` counts one).
    pub fn len(&self) -> usize {
        let st = lock(&self.queue.state);
        st.items.len() + usize::from(st.lost > 0)
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(feed) = self.feed.upgrade() else {
            return;
        };
        let mut subs = lock(&feed.subscribers);
        subs.retain(|q| !Arc::ptr_eq(q, &self.queue));
        feed.count.store(subs.len(), Ordering::Release);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("queued", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chorus_engine::engine::ChangeSource;
    use chorus_engine::storage::memory::MemoryStorage;
    use chorus_engine::{EngineConfig, KeyEvent};

    fn event(k: &str, event: KeyEvent) -> Change {
        Change::Key {
            db: 0,
            key: Bytes::copy_from_slice(k.as_bytes()),
            source: ChangeSource::Local,
            event,
        }
    }

    fn key(k: &str) -> Change {
        event(k, KeyEvent::Set)
    }

    fn all(s: &Subscription) -> Vec<Change> {
        std::iter::from_fn(|| s.try_recv().ok()).collect()
    }

    #[test]
    fn every_subscriber_gets_every_change_in_order() {
        let feed = ChangeFeed::new(8);
        feed.publish(&[key("before")]);
        let a = feed.subscribe();
        let b = feed.subscribe();
        assert_eq!(feed.subscribers(), 2);
        feed.publish(&[key("x"), key("y")]);
        feed.publish(&[key("z")]);
        let want = vec![key("x"), key("y"), key("z")];
        assert_eq!(all(&a), want);
        assert_eq!(all(&b), want);
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_slow_subscriber_lags_without_holding_up_the_others() {
        let feed = ChangeFeed::new(3);
        let slow = feed.subscribe();
        let fast = feed.subscribe_with_capacity(100);
        for i in 0..10 {
            feed.publish(&[key(&format!("k{i}"))]);
            assert_eq!(fast.try_recv(), Ok(key(&format!("k{i}"))));
        }
        assert_eq!(slow.len(), 4);
        assert_eq!(
            all(&slow),
            vec![key("k0"), key("k1"), key("k2"), Change::Lagged(7)]
        );
        // After the lag it gets the changes again.
        feed.publish(&[key("after")]);
        assert_eq!(all(&slow), vec![key("after")]);
        // An engine's own Lagged counts what it lost.
        feed.publish(&[key("a"), key("b"), key("c"), Change::Lagged(5), key("d")]);
        assert_eq!(
            all(&slow),
            vec![key("a"), key("b"), key("c"), Change::Lagged(6)]
        );
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let feed = ChangeFeed::new(8);
        let a = feed.subscribe();
        let b = feed.subscribe();
        assert!(ChangeSink::wanted(&feed));
        drop(a);
        assert_eq!(feed.subscribers(), 1);
        feed.publish(&[key("k")]);
        assert_eq!(all(&b), vec![key("k")]);
        drop(b);
        assert_eq!(feed.subscribers(), 0);
        assert!(!ChangeSink::wanted(&feed), "the engine records nothing now");
    }

    #[test]
    fn recv_waits_for_a_change_and_ends_when_the_feed_closes() {
        let feed = ChangeFeed::new(8);
        let sub = feed.subscribe();
        assert_eq!(
            sub.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        let publisher = feed.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            publisher.publish(&[key("late")]);
            std::thread::sleep(Duration::from_millis(20));
            publisher.close();
        });
        assert_eq!(sub.recv_timeout(Duration::from_secs(10)), Ok(key("late")));
        assert_eq!(
            sub.recv_timeout(Duration::from_secs(10)),
            Err(RecvTimeoutError::Disconnected)
        );
        assert_eq!(sub.recv(), Err(RecvError));
        t.join().unwrap();
        // Subscribing to a closed feed gives a closed subscription.
        let late = feed.subscribe();
        assert_eq!(late.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(feed.subscribers(), 0);
    }

    #[test]
    fn a_subscription_ends_when_the_last_handle_of_the_feed_is_gone() {
        let feed = ChangeFeed::new(8);
        let sub = feed.subscribe();
        feed.publish(&[key("k")]);
        drop(feed);
        assert_eq!(sub.recv(), Ok(key("k")));
        assert_eq!(sub.recv(), Err(RecvError));
    }

    #[test]
    fn an_attached_engine_publishes_its_changes() {
        let mut engine =
            Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(1)).unwrap();
        let feed = ChangeFeed::new(8);
        feed.attach(&mut engine);
        let set = |e: &mut Engine, k: &str| {
            let args = [
                Bytes::from_static(b"SET"),
                Bytes::copy_from_slice(k.as_bytes()),
                Bytes::from_static(b"v"),
            ];
            e.execute(0, &args, 1_000);
        };
        set(&mut engine, "unseen");
        let sub = feed.subscribe();
        set(&mut engine, "seen");
        assert_eq!(all(&sub), vec![event("seen", KeyEvent::New), key("seen")]);
        drop(sub);
        set(&mut engine, "gone");
        let sub = feed.subscribe();
        assert!(
            all(&sub).is_empty(),
            "nothing recorded while nobody listened"
        );
    }
}
