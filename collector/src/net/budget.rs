//! Connection budgets: how many sockets the collector holds open, of which how many have not
//! yet proved who they are, and how many are agents. Unauthenticated and silent connections
//! have a budget of their own, so they can never take the places agents and viewers need, and
//! the total stays below the process's file-descriptor limit with a reserve, so the database,
//! `/healthz` and new agents never meet `EMFILE`.
//!
//! Budgets (README "Limits"): open sockets ≤ the descriptor limit − [`FD_RESERVE`];
//! unauthenticated (no request head or upgrade yet) ≤ `--max-pending-connections` and a quarter
//! of that; agents ≤ `--max-connections`; HTTP connections ≤ a quarter of it too; live
//! viewers ≤ `--max-subscribers` (counted by [`crate::fanout::subscribe::SubscriberSlot`]).
//!
//! A full unauthenticated budget makes room by closing its oldest connection rather than by
//! refusing the newest: a flood of sockets that never finish their handshake then only ever
//! holds the most recent ones, and an agent or `/healthz`, whose request comes within
//! milliseconds, always gets through. A flood must open connections faster than a real client
//! completes its head to keep one out.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;

/// Descriptors kept back for the database (a file, its WAL and shared memory per connection),
/// the listeners, logging and the accept loop itself.
pub const FD_RESERVE: usize = 64;

/// The collector's connection budgets, shared by both listeners.
#[derive(Debug)]
pub struct Budget {
    open: Counter,
    pending: Arc<Pending>,
    agents: Counter,
    http: Counter,
    refused: RefusalLog,
    evicted: RefusalLog,
}

/// The connections that have not proved themselves yet, oldest first, each with the sender
/// that closes it when it must make room.
#[derive(Debug)]
struct Pending {
    max: usize,
    queue: Mutex<PendingQueue>,
}

#[derive(Debug, Default)]
struct PendingQueue {
    next: u64,
    waiting: BTreeMap<u64, async_channel::Sender<()>>,
}

impl Pending {
    /// Enters a new connection, closing the oldest one when full; says whether it had to.
    fn enter(self: &Arc<Self>) -> (PendingGuard, bool) {
        let (evict, evicted) = async_channel::bounded(1);
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let full = queue.waiting.len() >= self.max;
        if full && let Some((_, oldest)) = queue.waiting.pop_first() {
            // Its task notices at its next poll; if it just finished, there is nothing to close.
            let _ = oldest.try_send(());
        }
        let id = queue.next;
        queue.next += 1;
        queue.waiting.insert(id, evict);
        (PendingGuard { id, pending: self.clone(), evicted }, full)
    }

    fn leave(&self, id: u64) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).waiting.remove(&id);
    }
}

/// A place among the unauthenticated connections.
#[derive(Debug)]
struct PendingGuard {
    id: u64,
    pending: Arc<Pending>,
    evicted: async_channel::Receiver<()>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.leave(self.id);
    }
}

/// One bounded count.
#[derive(Debug)]
struct Counter {
    now: Arc<AtomicUsize>,
    max: usize,
}

impl Counter {
    fn new(max: usize) -> Self {
        Self { now: Arc::new(AtomicUsize::new(0)), max }
    }

    fn try_take(&self) -> Option<Slot> {
        let taken = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .is_ok();
        taken.then(|| Slot(self.now.clone()))
    }
}

/// A place in one budget, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`Budget::new`] sizes the budgets from.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// The process's file-descriptor limit.
    pub fd_limit: usize,
    /// `--max-connections`: agents.
    pub max_agents: usize,
    /// `--max-pending-connections`: connections that have not sent a request head or upgrade.
    pub max_pending: usize,
    /// Most HTTP connections (page, API and SSE together).
    pub max_http: usize,
}

impl Budget {
    /// Budgets that fit the descriptor limit: the total below it by [`FD_RESERVE`], and
    /// unauthenticated and HTTP connections each at most a quarter of that total.
    pub fn new(sizes: Sizes) -> Self {
        let open = sizes.fd_limit.saturating_sub(FD_RESERVE).max(16);
        let pending = Pending {
            max: sizes.max_pending.min(open / 4).max(1),
            queue: Mutex::new(PendingQueue::default()),
        };
        Self {
            open: Counter::new(open),
            pending: Arc::new(pending),
            agents: Counter::new(sizes.max_agents),
            http: Counter::new(sizes.max_http.min(open / 4).max(1)),
            refused: RefusalLog::default(),
            evicted: RefusalLog::default(),
        }
    }

    /// A place for a newly accepted socket on the `http` listener (or the WebSocket one), and
    /// one among the unauthenticated (closing the oldest of them when that budget is full), or
    /// why not.
    pub fn admit(&self, http: bool) -> Result<Admitted, &'static str> {
        let open = self.open.try_take().ok_or("the file-descriptor budget is used up")?;
        let listener = if http {
            Some(self.http.try_take().ok_or("too many HTTP connections")?)
        } else {
            None
        };
        let (pending, evicted) = self.pending.enter();
        if evicted {
            self.evicted.log(|count| {
                log::warn!(
                    "closing the oldest connections that sent no request: {} are waiting, the \
                     most --max-pending-connections allows ({count} closed since the last line)",
                    self.pending.max
                )
            });
        }
        Ok(Admitted { _open: open, _listener: listener, pending: Some(pending), _active: None })
    }

    /// A place among the agents.
    pub fn agent(&self) -> Option<Slot> {
        self.agents.try_take()
    }

    /// The most agents.
    pub fn max_agents(&self) -> usize {
        self.agents.max
    }

    /// Logs a refused connection: the first at once, later ones at most every ten seconds with
    /// a count, so a flood cannot flood the log too.
    pub fn log_refused(&self, listener: &str, why: &str) {
        self.refused.log(|count| {
            log::warn!(
                "{listener}: refusing connections: {why} ({count} refused since the last line)"
            )
        });
    }
}

/// A connection's places in the budgets, held while it is open.
#[derive(Debug)]
pub struct Admitted {
    _open: Slot,
    _listener: Option<Slot>,
    pending: Option<PendingGuard>,
    /// The listener's count of open connections, for the shutdown's wait.
    _active: Option<crate::net::listener::ActiveGuard>,
}

impl Admitted {
    /// Counts the connection among its listener's open ones while this lives.
    pub fn count_in(&mut self, active: crate::net::listener::ActiveGuard) {
        self._active = Some(active);
    }

    /// The connection proved itself (a complete request head, or an upgrade): it leaves the
    /// unauthenticated budget.
    pub fn authenticated(&mut self) {
        self.pending = None;
    }

    /// The connection turned into a WebSocket on the HTTP listener: it leaves the HTTP
    /// connections' budget (an agent counts among the agents, a viewer among the subscribers).
    pub fn leave_http(&mut self) {
        self._listener = None;
    }

    /// Runs `work` (the connection's first request or upgrade) unless the connection is closed
    /// to make room for a newer one first: `None` then.
    pub async fn unless_evicted<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let Some(pending) = &self.pending else { return Some(work.await) };
        let evicted = async {
            // A message or a closed channel: either way its place was taken away.
            let _ = pending.evicted.recv().await;
            None
        };
        async { Some(work.await) }.or(evicted).await
    }
}

/// Rate limit for a repeated warning: one line, then at most one per [`RefusalLog::EVERY`] with
/// how many were held back.
#[derive(Debug, Default)]
pub struct RefusalLog {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl RefusalLog {
    /// How often a repeated warning may be logged.
    pub const EVERY: Duration = Duration::from_secs(10);

    /// A log with nothing counted yet; `const`, so a call site can keep one in a `static`.
    pub const fn new() -> Self {
        Self { count: AtomicU64::new(0), last: Mutex::new(None) }
    }

    /// Counts one occurrence and calls `write` with the count since the last line when a line
    /// is due.
    pub fn log(&self, write: impl FnOnce(u64)) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= Self::EVERY) {
            *last = Some(Instant::now());
            self.count.fetch_sub(count, Ordering::Relaxed);
            write(count);
        }
    }
}

/// The process's file-descriptor limit, raised to its hard limit first (a systemd unit's
/// `LimitNOFILE=` sets the hard one; the soft one is often 1024).
pub fn raise_fd_limit() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(max)) = (limit.current, limit.maximum)
        && current < max
    {
        let raised = rustix::process::Rlimit { current: Some(max), maximum: Some(max) };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return usize::try_from(max).unwrap_or(usize::MAX);
        }
    }
    limit.current.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_fit_the_descriptor_limit_and_give_places_back() {
        let budget =
            Budget::new(Sizes { fd_limit: 164, max_agents: 2, max_pending: 1000, max_http: 4096 });
        // 100 open at most, 25 of them unauthenticated, 25 HTTP.
        let mut held: Vec<Admitted> = (0..25).map(|_| budget.admit(false).unwrap()).collect();
        for admitted in &mut held {
            admitted.authenticated();
        }
        held.extend((0..25).map(|_| budget.admit(true).unwrap()));
        for admitted in &mut held {
            admitted.authenticated();
        }
        assert_eq!(budget.admit(true).unwrap_err(), "too many HTTP connections");
        for _ in 0..50 {
            let mut admitted = budget.admit(false).unwrap();
            admitted.authenticated();
            held.push(admitted);
        }
        assert_eq!(budget.admit(false).unwrap_err(), "the file-descriptor budget is used up");
        held.clear();
        assert!(budget.admit(false).is_ok(), "places come back when connections close");
        let (a, b) = (budget.agent(), budget.agent());
        assert!(a.is_some() && b.is_some() && budget.agent().is_none());
        drop(a);
        assert!(budget.agent().is_some());
    }

    #[test]
    fn a_full_unauthenticated_budget_closes_its_oldest_connection() {
        let budget =
            Budget::new(Sizes { fd_limit: 1064, max_agents: 10, max_pending: 3, max_http: 100 });
        let waiting: Vec<Admitted> = (0..3).map(|_| budget.admit(false).unwrap()).collect();
        let never = std::future::pending::<()>;
        let evicted = |a: &Admitted| {
            smol::block_on(async {
                a.unless_evicted(never())
                    .or(async {
                        smol::Timer::after(Duration::from_millis(20)).await;
                        Some(())
                    })
                    .await
            })
            .is_none()
        };
        assert!(!waiting.iter().any(evicted), "nobody is closed while there is room");
        let newest = budget.admit(false).expect("the newest gets a place");
        assert!(evicted(&waiting[0]), "the oldest makes room");
        assert!(!evicted(&waiting[1]) && !evicted(&waiting[2]) && !evicted(&newest));
        let mut proved = newest;
        proved.authenticated();
        assert_eq!(smol::block_on(proved.unless_evicted(async { 7 })), Some(7));
    }

    #[test]
    fn repeated_warnings_are_counted_not_repeated() {
        let log = RefusalLog::default();
        let mut lines = Vec::new();
        for _ in 0..100 {
            log.log(|count| lines.push(count));
        }
        assert_eq!(lines, [1]);
    }
}
