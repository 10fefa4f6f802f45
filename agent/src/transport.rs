//! Transport: one explicit state machine that owns the spool and the connection to the
//! collector. It is fed samples and the shutdown request over one bounded channel and knows
//! nothing of sysinfo.
//!
//! ```text
//!            ┌──────────── backoff elapsed ───────────┐
//!            ▼                                        │
//!       Connecting ── welcome ──▶ Connected ── lost ──▶ Waiting
//!            └────────── failed ─────────────────────────▲
//! ```
//! In every state samples keep arriving and go to the spool. While connected, spooled samples
//! are sent in batches (a bounded window of unacknowledged batches) and forgotten when acked.
//! Pings and a read deadline detect a dead collector; reconnection uses capped, jittered backoff,
//! the first retry after a lost connection spread over [`crate::backoff::RECONNECT_SPREAD`].
//!
//! With several collector addresses, every failure (connect, handshake, refusal, lost or dead
//! connection) moves to the next address, round-robin. Within a round the next address is tried
//! after a short jittered pause ([`FAILOVER_STEP`]; after a lost connection, the usual spread);
//! only a full round of failures waits out the backoff, which therefore grows once per round, as
//! it grows once per attempt with one address. A working connection is kept: the agent does not
//! drift back to the first address. The new collector's `Welcome` sets the resume point and the
//! spool holds everything not acknowledged, so nothing is lost and nothing is sent twice on one
//! connection.

use std::time::{Duration, Instant};

use async_tungstenite::WebSocketReceiver;
use async_tungstenite::WebSocketSender;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
use futures_lite::{FutureExt, StreamExt};
use protocol::{AgentMessage, Batch, CollectorMessage, Hello, Limits, Sample};
use smol::Timer;

use crate::backoff::Backoff;
use crate::net::{self, ConnectError, Stream, Target};
use crate::spool::Spool;

/// What the transport is fed.
#[derive(Debug)]
pub enum Input {
    /// A fresh sample; its `seq` is assigned here.
    Sample(Box<Sample>),
    /// Flush what can be flushed within the shutdown budget, persist the spool and return.
    Shutdown,
}

/// Within a round over several collectors, the next address is tried within this long (full
/// jitter), so a dead address costs little but agents do not all move in the same instant.
pub const FAILOVER_STEP: Duration = Duration::from_millis(500);

/// Batches sent but not yet acknowledged, at most.
const WINDOW: usize = 8;

/// On shutdown, how long to wait for the collector to acknowledge what is spooled. With
/// [`STOP_GRACE`] and the close frame's second, the agent exits within 5 s of SIGTERM.
const FLUSH_BUDGET: Duration = Duration::from_secs(2);

/// Once a stop is requested, how long a send may still block.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Timing of the transport.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The sampling interval.
    pub interval: Duration,
    /// Send a ping when nothing was heard from the collector for this long.
    pub ping_after: Duration,
    /// Declare the collector dead when nothing was heard for this long.
    pub dead_after: Duration,
}

impl Timing {
    /// A dead collector is detected within three intervals, but never sooner than 3 s nor later
    /// than 30 s.
    pub fn for_interval(interval: Duration) -> Self {
        let dead_after = (interval * 3).clamp(Duration::from_secs(3), Duration::from_secs(30));
        Self { interval, ping_after: (dead_after / 3).max(Duration::from_millis(500)), dead_after }
    }
}

/// A connection attempt in progress.
type Opening = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(net::Socket, protocol::Welcome), ConnectError>>>,
>;

enum State {
    Waiting {
        until: Instant,
    },
    /// The attempt is polled by [`Transport::wait`] itself, so the agent needs no executor
    /// thread: every wake-up happens on the transport's own thread.
    Connecting {
        attempt: Opening,
    },
    Connected(Connection),
}

struct Connection {
    sender: WebSocketSender<Stream>,
    receiver: WebSocketReceiver<Stream>,
    sent_upto: u64,
    inflight: usize,
    last_heard: Instant,
    ping_sent: bool,
}

/// What the reader task forwards from the collector.
enum Incoming {
    Message(CollectorMessage),
    Heard,
    Closed(String),
}

/// What woke the state machine. Lives for one turn of the loop, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Input(Option<Input>),
    RetryDue,
    Opened(Result<(net::Socket, protocol::Welcome), ConnectError>),
    FromCollector(Incoming),
    Tick,
}

/// The transport's owner: runs until it receives [`Input::Shutdown`] or its input closes.
pub struct Transport {
    /// Every collector, in the order given; at least one.
    targets: Vec<Target>,
    /// Index of the collector in use or being tried.
    current: usize,
    /// Addresses that failed in the current round (since the last welcome or full round).
    tried_in_round: usize,
    /// Whether every failure of the current round needed an operator (a refusal).
    round_all_refused: bool,
    hello: Hello,
    spool: Spool,
    timing: Timing,
    backoff: Backoff,
    rng: fastrand::Rng,
    failures: u32,
    down_since: Option<Instant>,
    last_refusal: Option<String>,
    flush_deadline: Option<Instant>,
    watchdog: crate::systemd::Watchdog,
    /// Closed by the signal thread when a stop is requested, so a blocked send can give up.
    stop: async_channel::Receiver<()>,
}

impl Transport {
    /// Creates the transport; nothing happens until [`Transport::run`].
    pub fn new(
        target: Target,
        hello: Hello,
        spool: Spool,
        timing: Timing,
        stop: async_channel::Receiver<()>,
    ) -> Self {
        Self::with_targets(vec![target], hello, spool, timing, stop)
    }

    /// Creates the transport for several collectors, tried in turn from the first (see the
    /// module documentation). Panics if `targets` is empty.
    pub fn with_targets(
        targets: Vec<Target>,
        hello: Hello,
        spool: Spool,
        timing: Timing,
        stop: async_channel::Receiver<()>,
    ) -> Self {
        assert!(!targets.is_empty(), "the transport needs a collector");
        Self {
            targets,
            current: 0,
            tried_in_round: 0,
            round_all_refused: true,
            hello,
            stop,
            spool,
            timing,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            rng: fastrand::Rng::new(),
            failures: 0,
            down_since: None,
            last_refusal: None,
            flush_deadline: None,
            watchdog: crate::systemd::Watchdog::from_env(),
        }
    }

    /// Drives the state machine until shutdown. Returns the spool, persisted.
    pub async fn run(mut self, inputs: async_channel::Receiver<Input>) -> anyhow::Result<Spool> {
        let mut state = self.connect();
        loop {
            // The loop turns at least once per sample and at every watchdog deadline, so a pet
            // here proves it is not stuck.
            self.watchdog.pet_if_due();
            if let Some(deadline) = self.flush_deadline {
                let flushed = self.spool.is_empty();
                if flushed || Instant::now() >= deadline || !matches!(state, State::Connected(_)) {
                    if !flushed {
                        log::warn!(
                            "stopping with {} samples spooled for the next start",
                            self.spool.len()
                        );
                    }
                    if let State::Connected(conn) = &mut state {
                        close(conn, CloseCode::Away, "agent stopping").await;
                    }
                    self.spool.persist()?;
                    return Ok(self.spool);
                }
            }
            let wake = self.wait(&mut state, &inputs).await;
            state = match (state, wake) {
                (state, Wake::Input(Some(Input::Sample(sample)))) => {
                    self.take_sample(state, *sample).await?
                }
                (state, Wake::Input(Some(Input::Shutdown)) | Wake::Input(None)) => {
                    self.flush_deadline.get_or_insert(Instant::now() + FLUSH_BUDGET);
                    // Nothing more will arrive once the input is closed or shutdown was asked.
                    inputs.close();
                    state
                }
                (State::Waiting { .. }, Wake::RetryDue) => self.connect(),
                (State::Connecting { .. }, Wake::Opened(Ok((socket, welcome)))) => {
                    self.connected(socket, welcome).await?
                }
                (State::Connecting { .. }, Wake::Opened(Err(err))) => self.failed(err),
                (State::Connected(conn), Wake::FromCollector(incoming)) => {
                    self.heard(conn, incoming).await?
                }
                (State::Connected(conn), Wake::Tick) => self.tick(conn).await,
                (state, _) => state,
            };
        }
    }

    async fn wait(&self, state: &mut State, inputs: &async_channel::Receiver<Input>) -> Wake {
        let input = async {
            match inputs.recv().await {
                Ok(input) => Wake::Input(Some(input)),
                // Once closed, stop listening to it and let the other branch decide.
                Err(_) if self.flush_deadline.is_some() => std::future::pending().await,
                Err(_) => Wake::Input(None),
            }
        };
        let timer = |at: Option<Instant>| async move {
            match at {
                Some(at) => {
                    Timer::at(at).await;
                    Wake::Tick
                }
                None => std::future::pending().await,
            }
        };
        let flush_timer = timer(self.flush_deadline).or(timer(self.watchdog.due()));
        let other = async {
            match state {
                State::Waiting { until } => {
                    Timer::at(*until).await;
                    Wake::RetryDue
                }
                State::Connecting { attempt } => Wake::Opened(attempt.as_mut().await),
                State::Connected(conn) => {
                    let check = conn.last_heard
                        + if conn.ping_sent {
                            self.timing.dead_after
                        } else {
                            self.timing.ping_after
                        };
                    // Reading here (not in a task of its own) keeps every wake-up on this thread;
                    // `next` is cancel-safe, as tungstenite keeps partial frames itself.
                    let incoming =
                        async { Wake::FromCollector(incoming(conn.receiver.next().await)) };
                    incoming
                        .or(async {
                            Timer::at(check).await;
                            Wake::Tick
                        })
                        .await
                }
            }
        };
        input.or(other).or(flush_timer).await
    }

    /// The URL of the collector in use or being tried.
    pub fn current_url(&self) -> &str {
        &self.targets[self.current].url
    }

    /// How the logs name the current collector: with its place in the list when there are
    /// several.
    fn describe_current(&self) -> String {
        match self.targets.len() {
            1 => self.current_url().to_owned(),
            n => format!("{} (collector {} of {n})", self.current_url(), self.current + 1),
        }
    }

    /// Moves to the next collector, round-robin; returns the one left.
    fn advance(&mut self) -> String {
        let left = self.current_url().to_owned();
        self.current = (self.current + 1) % self.targets.len();
        left
    }

    fn connect(&mut self) -> State {
        let target = self.targets[self.current].clone();
        let hello = self.hello.clone();
        State::Connecting { attempt: Box::pin(async move { net::open(&target, &hello).await }) }
    }

    async fn take_sample(&mut self, state: State, mut sample: Sample) -> anyhow::Result<State> {
        // The sampler keeps within the protocol's limits; should it ever not, one bad sample must
        // not block the spool's head (the collector would refuse that batch forever).
        if let Err(err) = sample.check_limits() {
            log::warn!("a sample broke a protocol limit and was dropped: {err}");
            self.spool.count_dropped()?;
            return Ok(state);
        }
        sample.seq = self.spool.allocate_seq();
        self.spool.push(&sample)?;
        match state {
            State::Connected(conn) => Ok(self.pump(conn).await),
            other => Ok(other),
        }
    }

    async fn connected(
        &mut self,
        socket: net::Socket,
        welcome: protocol::Welcome,
    ) -> anyhow::Result<State> {
        self.spool.resume_from(welcome.last_seq)?;
        let outage = self.down_since.take().map(|t| t.elapsed());
        log::info!(
            "connected to {} (collector has up to seq {}; {} samples to send{})",
            self.describe_current(),
            welcome.last_seq.map_or_else(|| "none".to_owned(), |s| s.to_string()),
            self.spool.len(),
            outage.map(|d| format!(", after {:.0?} away", d)).unwrap_or_default()
        );
        // The backoff is reset by the first ack, not here: a collector that welcomes agents but
        // cannot store (a full disk) must not be retried at the shortest delay forever.
        self.failures = 0;
        self.last_refusal = None;
        self.tried_in_round = 0;
        self.round_all_refused = true;
        crate::systemd::status(&format!("connected to {}", self.current_url()));
        let (sender, receiver) = socket.split();

        let conn = Connection {
            sender,
            receiver,
            sent_upto: welcome.last_seq.unwrap_or(0),
            inflight: 0,
            last_heard: Instant::now(),
            ping_sent: false,
        };
        Ok(self.pump(conn).await)
    }

    fn failed(&mut self, err: ConnectError) -> State {
        self.failures += 1;
        self.down_since.get_or_insert_with(Instant::now);
        crate::systemd::status(&format!("cannot reach the collector ({err}); spooling"));
        self.tried_in_round += 1;
        self.round_all_refused &= err.needs_operator();
        if self.targets.len() > 1 {
            let left = self.advance();
            log::warn!(
                "collector {left} failed: {err}; moving to {}{}",
                self.describe_current(),
                if self.tried_in_round >= self.targets.len() {
                    " after backoff (every collector failed this round)"
                } else {
                    ""
                }
            );
        }
        if self.tried_in_round < self.targets.len() {
            // Another address is left in this round: try it soon, still jittered.
            let delay = FAILOVER_STEP.mul_f64(self.rng.f64());
            return State::Waiting { until: Instant::now() + delay };
        }
        self.tried_in_round = 0;
        let all_refused = std::mem::replace(&mut self.round_all_refused, true);
        let delay = if all_refused {
            let text = err.to_string();
            // Say it once, clearly; repeats of the same refusal go to debug.
            if self.last_refusal.as_deref() != Some(text.as_str()) {
                log::error!("{text}; retrying slowly until this is fixed");
                self.last_refusal = Some(text);
            } else {
                log::debug!("{err}");
            }
            self.backoff.refused_delay(&mut self.rng)
        } else {
            let delay = self.backoff.next_delay(&mut self.rng);
            if self.failures == 1 {
                log::warn!(
                    "cannot reach the collector: {err}; retrying with backoff, spooling meanwhile"
                );
            } else {
                log::debug!("attempt {} failed: {err}; next in {delay:.1?}", self.failures);
            }
            delay
        };
        State::Waiting { until: Instant::now() + delay }
    }

    fn lost(&mut self, why: &str) -> State {
        log::warn!("connection to the collector lost: {why}; {} samples spooled", self.spool.len());
        self.down_since.get_or_insert_with(Instant::now);
        // Every agent of a collector that restarts (or dies) gets here at the same moment:
        // spread them, whether they come back to it or move on to the next one.
        let delay = self.backoff.after_loss(&mut self.rng);
        if self.targets.len() > 1 {
            let left = self.advance();
            // The lost collector counts as this round's first failure.
            self.tried_in_round = 1;
            self.round_all_refused = false;
            log::warn!(
                "moving from collector {left} to {} in {delay:.1?}: connection lost ({why})",
                self.describe_current()
            );
        }
        State::Waiting { until: Instant::now() + delay }
    }

    async fn heard(&mut self, mut conn: Connection, incoming: Incoming) -> anyhow::Result<State> {
        conn.last_heard = Instant::now();
        conn.ping_sent = false;
        match incoming {
            Incoming::Heard => Ok(State::Connected(conn)),
            Incoming::Message(CollectorMessage::Ack(ack)) => {
                self.backoff.reset();
                self.spool.ack(ack.seq)?;
                conn.inflight = conn.inflight.saturating_sub(1);
                Ok(self.pump(conn).await)
            }
            Incoming::Message(CollectorMessage::Refused(refusal))
                if !refusal.reason.needs_operator() =>
            {
                Ok(self.lost(&format!("the collector closed the connection: {}", refusal.message)))
            }
            Incoming::Message(CollectorMessage::Refused(refusal)) => {
                let err =
                    ConnectError::Refused { reason: refusal.reason, message: refusal.message };
                Ok(self.failed(err))
            }
            Incoming::Message(CollectorMessage::Welcome(_)) => {
                close(&mut conn, CloseCode::Protocol, "unexpected second welcome").await;
                Ok(self.lost("collector sent a second welcome"))
            }
            Incoming::Closed(why) => Ok(self.lost(&why)),
        }
    }

    async fn tick(&mut self, mut conn: Connection) -> State {
        let silent = conn.last_heard.elapsed();
        if silent >= self.timing.dead_after {
            return self.lost(&format!("nothing heard for {silent:.1?}"));
        }
        if silent >= self.timing.ping_after && !conn.ping_sent {
            conn.ping_sent = true;
            if let Err(err) = self.send(&mut conn, Message::Ping(Vec::new().into())).await {
                return self.lost(&err);
            }
        }
        State::Connected(conn)
    }

    /// Sends spooled samples the collector does not have yet, within the window.
    async fn pump(&mut self, mut conn: Connection) -> State {
        while conn.inflight < WINDOW {
            let samples = self.spool.batch_after(
                conn.sent_upto,
                Limits::MAX_SAMPLES_PER_BATCH,
                Limits::MAX_MESSAGE_BYTES / 2,
            );
            let Some(last) = samples.last().map(|s| s.seq) else {
                break;
            };
            let batch =
                AgentMessage::Batch(Batch { dropped_total: self.spool.dropped_total(), samples });
            let bytes = protocol::encode_agent_message(&batch);
            if let Err(err) = self.send(&mut conn, Message::binary(bytes)).await {
                return self.lost(&err);
            }
            conn.sent_upto = last;
            conn.inflight += 1;
        }
        State::Connected(conn)
    }

    /// Sends one message, giving up when the collector does not take it within the dead-peer
    /// deadline (a stuck collector must not stall the agent).
    /// Once a stop is requested, a send the collector does not take gets only [`STOP_GRACE`].
    async fn send(&self, conn: &mut Connection, message: Message) -> Result<(), String> {
        let deadline = self.timing.dead_after;
        let send =
            async { conn.sender.send(message).await.map_err(|e| format!("send failed: {e}")) };
        let stopping = async {
            // Resolves when the signal thread closes the channel.
            let _ = self.stop.recv().await;
            Timer::after(STOP_GRACE).await;
            Err("stopping, and the collector did not take a message in time".to_owned())
        };
        let dead = async {
            Timer::after(deadline).await;
            Err(format!("collector did not take a message within {deadline:?}"))
        };
        send.or(stopping).or(dead).await
    }
}

async fn close(conn: &mut Connection, code: CloseCode, reason: &str) {
    let frame = CloseFrame { code, reason: reason.to_owned().into() };
    // The peer may already be gone, or gone silent; either way there is nothing more to do.
    let _ = crate::runtime::within(Duration::from_secs(1), conn.sender.close(Some(frame))).await;
}

/// Sorts what the read half returned into what the state machine cares about.
fn incoming(read: Option<Result<Message, async_tungstenite::tungstenite::Error>>) -> Incoming {
    match read {
        Some(Ok(Message::Binary(bytes))) => match protocol::decode_collector_message(&bytes) {
            Ok(message) => Incoming::Message(message),
            Err(err) => Incoming::Closed(format!("undecodable message from the collector: {err}")),
        },
        Some(Ok(Message::Close(frame))) => Incoming::Closed(match frame {
            Some(f) => {
                format!("collector closed the connection ({} {})", u16::from(f.code), f.reason)
            }
            None => "collector closed the connection".into(),
        }),
        Some(Ok(_)) => Incoming::Heard,
        Some(Err(err)) => Incoming::Closed(format!("read failed: {err}")),
        None => Incoming::Closed("connection closed".into()),
    }
}
