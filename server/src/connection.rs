//! One client connection: read, parse every complete request, execute them
//! in order, write all their replies with one write (pipelining).
//!
//! Bounds: reads go into a buffer of [`READ_CHUNK_BYTES`] growing as a
//! request needs; the bytes of a partly received request plus any MULTI
//! queue may not exceed `client-query-buffer-limit` (the client is closed
//! without a reply, as Redis does); replies are flushed whenever
//! [`REPLY_BATCH_BYTES_MAX`] accumulate. A protocol error gets Redis's
//! error reply and closes this client only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chorus_engine::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::ClientHandle;
use crate::cmd::{self, Ctx};
use crate::config::Settings;
use crate::resp::{encode, ParseLimits, Protocol, RequestParser};
use crate::server::ServerState;
use crate::stats::Stats;
use crate::store::WriteMark;

/// Free space ensured before each read (Redis's `PROTO_IOBUF_LEN`).
pub const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Replies are written out once this many bytes are pending, even in the
/// middle of a pipeline, so a huge pipeline cannot grow the output without
/// bound.
pub const REPLY_BATCH_BYTES_MAX: usize = 1024 * 1024;

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
        }
    }

    /// Redis's `authRequired`: the default user has a password and this
    /// client has not authenticated.
    pub fn auth_required(&self, settings: &Settings) -> bool {
        settings.requirepass.is_some() && !self.authenticated
    }

    pub fn note_command(&self, fullname: &str) {
        self.handle.update(|v| {
            if v.last_command != fullname {
                v.last_command = fullname.to_string();
            }
        });
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
    let mut shutdown = state.subscribe_shutdown();
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let timeout_secs = state.settings().timeout_secs;
        let idle = async {
            if timeout_secs == 0 {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(Duration::from_secs(timeout_secs)).await
            }
        };
        let read = tokio::select! {
            read = stream.read_buf(&mut buf) => read,
            _ = handle.killed() => break,
            _ = shutdown.wait_for(|s| *s) => break,
            _ = idle => {
                tracing::debug!(%addr, id, "closing idle client");
                break;
            }
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
            &mut buf,
            &mut out,
            &mut stream,
        )
        .await;
        if !out.is_empty()
            && !session.close_now
            && write_out(&state, &mut stream, &mut out).await.is_err()
        {
            break;
        }
        handle.update(|v| {
            v.query_buffer_bytes = buf.len();
            v.query_buffer_free_bytes = buf.capacity() - buf.len();
            v.argv_bytes = parser.pending_bytes();
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
    state.clients.unregister(id);
}

/// Parses and executes every complete request in `buf`. Returns false when
/// the connection must close after the pending replies are written.
async fn process_input(
    state: &Arc<ServerState>,
    session: &mut Session,
    parser: &mut RequestParser,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    stream: &mut TcpStream,
) -> bool {
    loop {
        if session.close_after_reply || session.close_now || state.is_shutting_down() {
            // Like Redis, nothing after QUIT (or an error that closes) runs.
            return false;
        }
        let settings = state.settings();
        let limits = ParseLimits {
            bulk_bytes_max: settings.proto_max_bulk_len,
            auth_required: session.auth_required(&settings),
        };
        match parser.parse(buf, &limits) {
            Ok(Some(args)) => {
                let reply = {
                    let mut ctx = Ctx {
                        server: state,
                        session: &mut *session,
                        settings,
                        store: None,
                    };
                    cmd::process(&mut ctx, args)
                };
                // `write-mode sync`: the reply waits for a peer's ack, no lock held.
                let reply = match session.write_mark.take() {
                    Some(mark) => crate::sync_write::settle(state, mark, reply).await,
                    None => reply,
                };
                emit(session, &reply, out);
                if out.len() >= REPLY_BATCH_BYTES_MAX
                    && write_out(state, stream, out).await.is_err()
                {
                    return false;
                }
            }
            Ok(None) => return true,
            Err(e) => {
                tracing::debug!(addr = %session.handle.addr, error = %e, "protocol error");
                state.stats.count_error(&format!("ERR {e}"));
                if session.reply_mode == ReplyMode::On {
                    out.extend_from_slice(&e.reply_bytes());
                }
                session.close_after_reply = true;
                return false;
            }
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

async fn write_out(
    state: &ServerState,
    stream: &mut TcpStream,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    let len = out.len();
    stream.write_all(out).await?;
    out.clear();
    Stats::add(&state.stats.total_net_output_bytes, len as u64);
    Stats::add(&state.stats.total_writes_processed, 1);
    Ok(())
}
