//! One client connection: read, parse every complete request, execute them
//! in order, write all their replies with one write (pipelining).
//!
//! A run of pipelined data commands (outside MULTI) is executed as one
//! *batch*: parsed and looked up first, then run under one hold of the
//! engine lock, with one fsync under `appendfsync always` covering every
//! write of the batch before any of its replies is released; the replies
//! are encoded after the lock is released. Any other command (connection
//! and server commands, MULTI and what it queues) ends the batch and runs
//! on its own, in order, so it sees exactly the state a one-at-a-time
//! server would show it. The lock is never held across an await. Under
//! `write-mode sync` nothing is batched: each write's reply waits for a
//! peer's ack of its own op. A blocking pop (BLPOP...) that found nothing
//! waits here, outside MULTI, for its reply from `blocked`; meanwhile the
//! connection reads (and keeps) what the client sends, to see it leave.
//!
//! Bounds: reads go into a buffer of [`READ_CHUNK_BYTES`] growing as a
//! request needs; the bytes of a partly received request plus any MULTI
//! queue may not exceed `client-query-buffer-limit` (the client is closed
//! without a reply, as Redis does); a batch holds at most
//! [`BATCH_COMMANDS_MAX`] commands, so one client's pipeline cannot keep
//! the others from the engine for long; replies are flushed whenever
//! [`REPLY_BATCH_BYTES_MAX`] accumulate. A protocol error gets Redis's
//! error reply (after the replies of the commands before it) and closes
//! this client only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chorus_engine::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::{ClientHandle, QueryBufferFigures};
use crate::cmd::table::{flag, CommandSpec, CommandTable};
use crate::cmd::{self, Ctx, Handler};
use crate::config::{Settings, WriteMode};
use crate::pubsub::{Subscriber, Subscriptions};
use crate::resp::{encode, ParseLimits, Protocol, ProtocolError, RequestParser};
use crate::server::ServerState;
use crate::stats::Stats;
use crate::store::{self, StoreGuard, WriteMark};
use chorus_engine::cmd::blocking::{block_spec, is_empty_reply, BlockSpec};

/// Free space ensured before each read (Redis's `PROTO_IOBUF_LEN`).
pub const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Replies are written out once this many bytes are pending, even in the
/// middle of a pipeline, so a huge pipeline cannot grow the output without
/// bound.
pub const REPLY_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Most bytes of pub/sub messages moved from a subscriber's outbox to its
/// socket in one write; the rest wait in the outbox, where the output
/// buffer limit sees them.
pub const MESSAGES_DRAIN_BYTES_MAX: usize = 256 * 1024;
/// Slices of messages a subscriber's connection writes before it reads its
/// socket again.
pub const MESSAGES_TURN_SLICES_MAX: usize = 4;
/// Most data commands run under one hold of the engine lock. Large enough
/// for the usual pipeline depths (redis-benchmark's `-P 16`), small enough
/// that a deep pipeline yields the engine to other clients every few tens
/// of microseconds.
pub const BATCH_COMMANDS_MAX: usize = 32;

/// `CLIENT REPLY` state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplyMode {
    #[default]
    On,
    Off,
    /// Drop the reply of the next command only.
    SkipNext,
}

/// A transaction being queued by MULTI.
#[derive(Debug, Default)]
pub struct MultiState {
    pub queued: Vec<Vec<Bytes>>,
    pub queued_bytes: usize,
    /// A queued command was rejected: EXEC must answer EXECABORT.
    pub aborted: bool,
    /// The flags of every queued command, or-ed (`CLIENT PAUSE WRITE`
    /// holds an EXEC that would write).
    pub queued_flags: u32,
    /// The keys of the queued writes that are in owned units (one home
    /// for the whole transaction: see `cmd::unit::check_queued`).
    pub unit_keys: Vec<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedKey {
    pub db: u8,
    pub key: Bytes,
    pub version: u64,
}

/// Per-connection state, owned by the connection's task.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub handle: Arc<ClientHandle>,
    pub db: u8,
    pub protocol: Protocol,
    pub authenticated: bool,
    pub name: Option<Bytes>,
    pub multi: Option<MultiState>,
    pub watched: Vec<WatchedKey>,
    pub reply_mode: ReplyMode,
    /// The peer is on a loopback address (`enable-*-command local`).
    pub peer_is_local: bool,
    /// Send the pending replies, then close (QUIT, protocol error, self-kill).
    pub close_after_reply: bool,
    /// Close without sending anything more (a limit was exceeded).
    pub close_now: bool,
    /// Do not send this command's reply (SHUTDOWN, CLIENT REPLY OFF/SKIP).
    pub suppress_reply: bool,
    /// The op this command (or EXEC) wrote, for `write-mode sync`.
    pub write_mark: Option<WriteMark>,
    /// A CONFIG SET inside EXEC changed settings the store keeps: the
    /// settings before it, applied to the store when EXEC releases it.
    pub store_settings_pending: Option<Arc<Settings>>,
    /// Commands run but not yet added to `total_commands_processed`: the
    /// shared counter is bumped once per batch, not once per command.
    pub commands_processed: u64,
    /// `INFO commandstats` figures not yet added to the shared ones.
    pub cmdstats: crate::cmdstats::Pending,
    /// Inside a batch of data commands: when the last one ended (the next
    /// one's start, for the statistics).
    pub batch_clock: Option<Instant>,
    /// What this client is subscribed to.
    pub subscriptions: Subscriptions,
    /// Where publishers queue this client's messages; made by its first
    /// subscription.
    pub subscriber: Option<Arc<Subscriber>>,
}

impl Session {
    pub fn new(handle: Arc<ClientHandle>, settings: &Settings) -> Session {
        Session {
            id: handle.id,
            peer_is_local: handle.addr.ip().is_loopback(),
            handle,
            db: 0,
            protocol: Protocol::Resp2,
            // Like Redis: a client is authenticated from the start if the
            // default user has no password when it connects.
            authenticated: settings.requirepass.is_none(),
            name: None,
            multi: None,
            watched: Vec::new(),
            reply_mode: ReplyMode::On,
            close_after_reply: false,
            close_now: false,
            suppress_reply: false,
            write_mark: None,
            store_settings_pending: None,
            commands_processed: 0,
            cmdstats: crate::cmdstats::Pending::default(),
            batch_clock: None,
            subscriptions: Subscriptions::default(),
            subscriber: None,
        }
    }

    /// Subscribed to anything and speaking RESP2: only the subscription
    /// commands, PING, QUIT and RESET may run.
    pub fn in_resp2_pubsub_mode(&self) -> bool {
        self.protocol == Protocol::Resp2 && self.subscriptions.total() > 0
    }

    /// Updates the `sub`, `psub` and `ssub` figures of CLIENT LIST.
    pub fn sync_pubsub_view(&self) {
        let subs = &self.subscriptions;
        let (sub, psub, ssub) = (
            subs.channels.len(),
            subs.patterns.len(),
            subs.shard_channels.len(),
        );
        self.handle.update(|v| {
            v.sub = sub;
            v.psub = psub;
            v.ssub = ssub;
        });
    }

    /// Encodes up to [`MESSAGES_DRAIN_BYTES_MAX`] bytes of the messages
    /// waiting for this subscriber into `out`; true if more are left.
    /// Messages go out whatever CLIENT REPLY says, as Redis's pushes do.
    fn drain_messages(&self, out: &mut BytesMut) -> bool {
        let Some(subscriber) = &self.subscriber else {
            return false;
        };
        let mut messages = Vec::new();
        let more = subscriber.take(&mut messages, MESSAGES_DRAIN_BYTES_MAX);
        for message in &messages {
            encode(&message.reply(), self.protocol, out);
        }
        more
    }

    /// Adds the commands run since the last call to the server's counters.
    pub fn flush_stats(&mut self, stats: &Stats) {
        self.cmdstats.flush(&stats.commands);
        let n = std::mem::take(&mut self.commands_processed);
        if n > 0 {
            Stats::add(&stats.total_commands_processed, n);
        }
    }

    /// Redis's `authRequired`: the default user has a password and this
    /// client has not authenticated.
    pub fn auth_required(&self, settings: &Settings) -> bool {
        settings.requirepass.is_some() && !self.authenticated
    }

    /// Records the command for `CLIENT LIST` (`cmd=`).
    pub fn note_command(&self, spec: &'static CommandSpec) {
        self.handle.note_command(spec);
    }

    pub fn set_name(&mut self, name: Option<Bytes>) {
        self.handle.update(|v| v.name = name.clone());
        self.name = name;
    }

    pub fn set_db(&mut self, db: u8) {
        self.db = db;
        self.handle.update(|v| v.db = db);
    }

    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
        self.handle.update(|v| v.resp = protocol.version());
    }

    pub fn set_no_evict(&mut self, on: bool) {
        self.handle.update(|v| v.no_evict = on);
    }

    pub fn sync_multi_view(&self) {
        let count = self
            .multi
            .as_ref()
            .map(|m| i64::try_from(m.queued.len()).unwrap_or(i64::MAX))
            .unwrap_or(-1);
        self.handle.update(|v| v.multi = count);
    }

    fn queued_bytes(&self) -> usize {
        self.multi.as_ref().map(|m| m.queued_bytes).unwrap_or(0)
    }
}

/// Serves one client until it quits, errs, is killed, idles out, or the
/// server stops.
pub async fn serve(state: Arc<ServerState>, mut stream: TcpStream, handle: Arc<ClientHandle>) {
    let addr = handle.addr;
    let id = handle.id;
    let settings = state.settings();
    let mut session = Session::new(Arc::clone(&handle), &settings);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut out = BytesMut::new();
    let mut parser = RequestParser::new();
    let mut batch = Batch::default();
    let mut shutdown = state.subscribe_shutdown();
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES {
            buf.reserve(READ_CHUNK_BYTES);
        }
        // Like Redis, `timeout` spares subscribers: they only listen.
        let timeout_secs = match session.subscriptions.total() {
            0 => state.settings().timeout_secs,
            _ => 0,
        };
        let idle = async {
            if timeout_secs == 0 {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(Duration::from_secs(timeout_secs)).await
            }
        };
        let subscriber = session.subscriber.clone();
        let messages = async {
            match &subscriber {
                Some(subscriber) => subscriber.ready().await,
                None => std::future::pending::<()>().await,
            }
        };
        let read = tokio::select! {
            read = stream.read_buf(&mut buf) => Some(read),
            _ = handle.killed() => break,
            _ = shutdown.wait_for(|s| *s) => break,
            _ = idle => {
                tracing::debug!(%addr, id, "closing idle client");
                break;
            }
            _ = messages => None,
        };
        let Some(read) = read else {
            // Messages to send (the select's guards are gone: no await in it).
            if send_messages(&state, &session, &mut stream, &mut out)
                .await
                .is_err()
            {
                break;
            }
            continue;
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(%addr, id, error = %e, "read failed");
                break;
            }
        };
        let now = Instant::now();
        handle.touch(now);
        Stats::add(&state.stats.total_net_input_bytes, n as u64);
        Stats::add(&state.stats.total_reads_processed, 1);
        state
            .stats
            .client_recent_max_input_buffer
            .fetch_max(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);

        let keep_going = process_input(
            &state,
            &mut session,
            &mut parser,
            &mut batch,
            &mut buf,
            &mut out,
            &mut stream,
        )
        .await;
        session.flush_stats(&state.stats);
        // Let the other connections that are ready read and run their
        // commands before this one writes: replies then leave in a burst, as
        // from Redis's event loop, and a client reading several connections
        // (redis-benchmark) is woken once per burst instead of once per reply.
        // Measured at -P16: +20 to 40 % ops/s; no change at -P1.
        if !out.is_empty() {
            tokio::task::yield_now().await;
        }
        if !out.is_empty()
            && !session.close_now
            && write_out(&state, &handle, &mut stream, &mut out)
                .await
                .is_err()
        {
            break;
        }
        handle.set_query_buffer(QueryBufferFigures {
            query_buffer_bytes: buf.len(),
            query_buffer_free_bytes: buf.capacity() - buf.len(),
            argv_bytes: parser.pending_bytes(),
        });
        if !keep_going || session.close_after_reply || session.close_now {
            break;
        }
        let limit = state.settings().client_query_buffer_limit;
        let held = buf.len() + parser.pending_bytes() + session.queued_bytes();
        if held as u64 > limit {
            tracing::warn!(%addr, id, held, limit, "closing client that reached max query buffer length");
            Stats::add(&state.stats.client_query_buffer_limit_disconnections, 1);
            break;
        }
    }
    let _ = stream.shutdown().await;
    state.pubsub.remove_all(id, &mut session.subscriptions);
    state.clients.unregister(id);
}

/// Writes the messages waiting for this subscriber, a bounded slice at a
/// time, at most [`MESSAGES_TURN_SLICES_MAX`] slices before the connection
/// looks at its socket again (a client flooded with messages can still
/// UNSUBSCRIBE); what is left wakes it again at once.
async fn send_messages(
    state: &ServerState,
    session: &Session,
    stream: &mut TcpStream,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    for _ in 0..MESSAGES_TURN_SLICES_MAX {
        let more = session.drain_messages(out);
        if !out.is_empty() {
            write_out(state, &session.handle, stream, out).await?;
        }
        if !more {
            return Ok(());
        }
    }
    if let Some(subscriber) = &session.subscriber {
        subscriber.wake();
    }
    Ok(())
}

/// Data commands parsed but not yet run, and the replies of a batch being
/// encoded; kept per connection so a batch allocates nothing once warm.
#[derive(Default)]
struct Batch {
    /// The arguments of every request of the batch, one after the other.
    args: Vec<Bytes>,
    /// Each request: where its arguments are in `args`, and its spec.
    requests: Vec<(std::ops::Range<usize>, &'static CommandSpec)>,
    /// Each reply, and whether its command wrote.
    replies: Vec<(Reply, bool)>,
}

/// Argument slots a connection keeps between batches; a batch that needed
/// more gives the rest back.
const BATCH_ARGS_KEPT_MAX: usize = 1024;

impl Batch {
    fn clear(&mut self) {
        self.args.clear();
        self.requests.clear();
        if self.args.capacity() > BATCH_ARGS_KEPT_MAX {
            self.args.shrink_to(BATCH_ARGS_KEPT_MAX);
        }
    }
}

/// What ended the parsing of a batch.
enum BatchEnd {
    /// The batch is full; more requests may be buffered.
    Full,
    /// No complete request is left in the buffer.
    NeedInput,
    /// A request that is not a batchable data command: run on its own,
    /// after the batch. Its arguments are the tail of the batch's `args`.
    Command(usize, Result<&'static CommandSpec, Reply>),
    Protocol(ProtocolError),
}

/// Parses and executes every complete request in `buf`. Returns false when
/// the connection must close after the pending replies are written.
async fn process_input(
    state: &Arc<ServerState>,
    session: &mut Session,
    parser: &mut RequestParser,
    batch: &mut Batch,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    stream: &mut TcpStream,
) -> bool {
    let table = CommandTable::redis();
    loop {
        if session.close_after_reply || session.close_now || state.is_shutting_down() {
            // Like Redis, nothing after QUIT (or an error that closes) runs.
            return false;
        }
        // Neither the limits nor MULTI can change inside a batch: AUTH,
        // HELLO, CONFIG and MULTI are not data commands, so they end it.
        let settings = state.settings();
        let limits = ParseLimits {
            bulk_bytes_max: settings.proto_max_bulk_len,
            auth_required: session.auth_required(&settings),
        };
        // Under `write-mode sync` each write's reply waits for a peer's ack
        // of its own op (`sync_write::settle`): commands run one at a time.
        let batching = settings.write_mode != WriteMode::Sync && session.multi.is_none();
        let end = loop {
            if batch.requests.len() >= BATCH_COMMANDS_MAX {
                break BatchEnd::Full;
            }
            let start = batch.args.len();
            match parser.parse_into(buf, &limits, &mut batch.args) {
                Ok(Some(_)) => {
                    match cmd::lookup(table, batch.args.get(start..).unwrap_or_default()) {
                        Ok(spec)
                            if batching
                                && spec.handler == Handler::Data
                                && !spec.has_flag(flag::BLOCKING)
                                && !state.pause.is_active() =>
                        {
                            batch.requests.push((start..batch.args.len(), spec));
                        }
                        found => break BatchEnd::Command(start, found),
                    }
                }
                Ok(None) => break BatchEnd::NeedInput,
                Err(e) => break BatchEnd::Protocol(e),
            }
        };
        if !batch.requests.is_empty() {
            run_batch(state, session, &settings, batch, out);
        }
        match end {
            BatchEnd::Full => {}
            BatchEnd::NeedInput => {
                batch.clear();
                return true;
            }
            BatchEnd::Command(start, found) => {
                if let Ok(spec) = &found {
                    // CLIENT PAUSE: the command waits for the pause to end.
                    let queued = session.multi.as_ref().map_or(0, |m| m.queued_flags);
                    if state.pause.holds(spec, queued).is_some() {
                        let handle = Arc::clone(&session.handle);
                        let mut shutdown = state.subscribe_shutdown();
                        tokio::select! {
                            _ = state.pause.wait(spec, queued) => {}
                            _ = handle.killed() => return false,
                            _ = shutdown.wait_for(|s| *s) => return false,
                        }
                    }
                }
                let in_multi = session.multi.is_some();
                let reply = {
                    let mut ctx = Ctx {
                        server: state,
                        session: &mut *session,
                        settings: Arc::clone(&settings),
                        store: None,
                    };
                    let args = batch.args.get(start..).unwrap_or_default();
                    cmd::process_found(&mut ctx, found.clone(), args)
                };
                let block = match &found {
                    Ok(spec) if !in_multi && spec.has_flag(flag::BLOCKING) => {
                        let args = batch.args.get(start..).unwrap_or_default();
                        spec.data
                            .filter(|_| is_empty_reply(&reply))
                            .and_then(|data| {
                                block_spec(args, store::now_ms()).map(|b| (data, args.to_vec(), b))
                            })
                    }
                    _ => None,
                };
                let reply = match block {
                    None => reply,
                    Some((data, args, spec)) => {
                        let limit = settings.client_query_buffer_limit;
                        match wait_blocked(state, session, data, args, spec, buf, stream, limit)
                            .await
                        {
                            Some(r) => r,
                            None => return false,
                        }
                    }
                };
                // `write-mode sync`: the reply waits for a peer's ack, no lock held.
                let reply = match session.write_mark.take() {
                    Some(mark) => crate::sync_write::settle(state, mark, reply).await,
                    None => reply,
                };
                // Messages queued before this command's reply go out before
                // it (its own PUBLISH to itself, everything before an
                // UNSUBSCRIBE), as from Redis's output buffer; the outbox's
                // limit bounds them.
                while session.drain_messages(out) {}
                emit(session, &reply, out);
            }
            BatchEnd::Protocol(e) => {
                batch.clear();
                tracing::debug!(addr = %session.handle.addr, error = %e, "protocol error");
                state.stats.count_error(&format!("ERR {e}"));
                if session.reply_mode == ReplyMode::On {
                    out.extend_from_slice(&e.reply_bytes());
                }
                session.close_after_reply = true;
                return false;
            }
        }
        batch.clear();
        if out.len() >= REPLY_BATCH_BYTES_MAX
            && write_out(state, &session.handle, stream, out)
                .await
                .is_err()
        {
            return false;
        }
    }
}

/// What ended a wait in a blocking command.
enum Unblocked {
    Reply(Option<Reply>),
    Timeout,
    ByClient { error: bool },
    Gone,
}

/// Waits for the reply of a blocked command (see [`crate::blocked`]): the
/// element, or its timeout reply, or `CLIENT UNBLOCK`'s. `None` when the
/// client left, was killed or the server stops (the connection closes).
#[allow(clippy::too_many_arguments)]
async fn wait_blocked(
    state: &Arc<ServerState>,
    session: &mut Session,
    data: &'static chorus_engine::cmd::DataCommand,
    args: Vec<Bytes>,
    spec: BlockSpec,
    buf: &mut BytesMut,
    stream: &mut TcpStream,
    buffer_limit: u64,
) -> Option<Reply> {
    let handle = Arc::clone(&session.handle);
    handle.set_blocked(true);
    let reg = state
        .blocked
        .block(state, session.db, data, args, spec.keys);
    let mut rx = reg.reply;
    let deadline = async {
        if spec.deadline_ms == 0 {
            std::future::pending::<()>().await
        } else {
            let left = spec.deadline_ms.saturating_sub(store::now_ms());
            tokio::time::sleep(Duration::from_millis(left)).await
        }
    };
    tokio::pin!(deadline);
    let mut shutdown = state.subscribe_shutdown();
    let outcome = loop {
        tokio::select! {
            r = &mut rx => break Unblocked::Reply(r.ok()),
            _ = &mut deadline => break Unblocked::Timeout,
            error = handle.unblock_requested() => break Unblocked::ByClient { error },
            _ = handle.killed() => break Unblocked::Gone,
            _ = shutdown.wait_for(|s| *s) => break Unblocked::Gone,
            read = stream.read_buf(buf) => match read {
                // What the client sends meanwhile waits in the buffer, as in
                // Redis, up to the query buffer limit.
                Ok(n) if n > 0 && (buf.len() as u64) <= buffer_limit => {}
                _ => break Unblocked::Gone,
            },
        }
    };
    handle.set_blocked(false);
    let timeout_reply = Reply::NilArray;
    match outcome {
        Unblocked::Reply(r) => Some(r.unwrap_or(timeout_reply)),
        Unblocked::Gone => {
            state.blocked.cancel(reg.id);
            None
        }
        Unblocked::Timeout | Unblocked::ByClient { .. } if !state.blocked.cancel(reg.id) => {
            // Served as the wait ended: the element is the client's.
            Some(rx.try_recv().unwrap_or(timeout_reply))
        }
        Unblocked::Timeout | Unblocked::ByClient { error: false } => Some(timeout_reply),
        Unblocked::ByClient { error: true } => {
            Some(Reply::err("UNBLOCKED client unblocked via CLIENT UNBLOCK"))
        }
    }
}

/// Runs a batch of data commands under one hold of the engine lock, then
/// encodes their replies with the lock released. Under `appendfsync always`
/// one fsync covers every write of the batch, before any reply is released
/// (if it fails, each write answers the MISCONF error, as a single write would).
fn run_batch(
    state: &ServerState,
    session: &mut Session,
    settings: &Arc<Settings>,
    batch: &mut Batch,
    out: &mut BytesMut,
) {
    let threshold_ms = settings.busy_reply_threshold_ms;
    let Some(mut guard) = state
        .store
        .lock_unless(|| state.scripts.run.busy(threshold_ms))
    else {
        // A script is busy: each command gets BUSY (process_found), none
        // waits for the store.
        {
            let mut ctx = Ctx {
                server: state,
                session: &mut *session,
                settings: Arc::clone(settings),
                store: None,
            };
            for (range, spec) in &batch.requests {
                let args = batch.args.get(range.clone()).unwrap_or_default();
                let reply = cmd::process_found(&mut ctx, Ok(*spec), args);
                batch.replies.push((reply, false));
            }
        }
        session.flush_stats(&state.stats);
        for (reply, _) in batch.replies.drain(..) {
            emit(session, &reply, out);
        }
        return;
    };
    guard.begin_batch(store::now_ms());
    session.batch_clock = Some(Instant::now());
    let durable = {
        let mut ctx = Ctx {
            server: state,
            session: &mut *session,
            settings: Arc::clone(settings),
            store: Some(guard),
        };
        for (range, spec) in &batch.requests {
            let args = batch.args.get(range.clone()).unwrap_or_default();
            let writes_before = ctx.store.as_ref().map_or(0, StoreGuard::batch_writes);
            let reply = cmd::process_found(&mut ctx, Ok(*spec), args);
            let wrote = ctx.store.as_ref().map_or(0, StoreGuard::batch_writes) != writes_before;
            batch.replies.push((reply, wrote));
        }
        match ctx.store.take() {
            Some(mut guard) => guard.end_batch(),
            None => Ok(()),
        }
        // The guard is dropped here: the engine is free again.
    };
    session.batch_clock = None;
    session.flush_stats(&state.stats);
    for (reply, wrote) in batch.replies.drain(..) {
        match (&durable, wrote) {
            (Err(misconf), true) => {
                state.stats.count_error(store::MISCONF_ERROR);
                emit(session, misconf, out);
            }
            _ => emit(session, &reply, out),
        }
    }
}

/// Encodes a reply unless CLIENT REPLY or SHUTDOWN says not to.
fn emit(session: &mut Session, reply: &Reply, out: &mut BytesMut) {
    if std::mem::take(&mut session.suppress_reply) {
        return;
    }
    match session.reply_mode {
        ReplyMode::On => encode(reply, session.protocol, out),
        ReplyMode::Off => {}
        ReplyMode::SkipNext => session.reply_mode = ReplyMode::On,
    }
}

/// Writes `out` whole, unless the client is killed meanwhile (CLIENT KILL,
/// a subscriber over its output buffer limit): a client that stopped
/// reading must not keep its connection and buffers alive.
async fn write_out(
    state: &ServerState,
    handle: &ClientHandle,
    stream: &mut TcpStream,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    let len = out.len();
    tokio::select! {
        written = stream.write_all(out) => written?,
        _ = handle.killed() => {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "client killed"));
        }
    }
    out.clear();
    Stats::add(&state.stats.total_net_output_bytes, len as u64);
    Stats::add(&state.stats.total_writes_processed, 1);
    Ok(())
}
