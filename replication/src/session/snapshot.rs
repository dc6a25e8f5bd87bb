//! Full sync: our snapshot taken and sent in bounded chunks, then streaming
//! resumed from its vector; the peer's snapshot received within its announced
//! row count and `snapshot_bytes_max`, then merged into the engine.

use super::{
    IncomingSnapshot, Outbound, OutgoingSnapshot, PeerSession, SessionError, SessionEvent,
    SyncDirection, SNAPSHOT_ROW_ACCOUNTING_BYTES,
};
use crate::wire::{Message, SnapshotRow, SNAPSHOT_CHUNK_ROWS_MAX, SNAPSHOT_ROW_BYTES_MAX};
use bytes::Bytes;
use chorus_engine::hlc::Hlc;
use chorus_engine::id::VersionVector;
use chorus_engine::keyspace::image::RowImage;
use chorus_engine::{Engine, Snapshot};

impl PeerSession {
    pub(super) fn on_snapshot_begin(
        &mut self,
        now_ms: u64,
        vv: VersionVector,
        hlc: Hlc,
        rows_total: u64,
    ) {
        if self.incoming.is_some() {
            self.close(SessionError::UnexpectedMessage {
                message: "SnapshotBegin",
                state: "receiving a snapshot",
            });
            return;
        }
        // The peer holds everything its snapshot covers: no need to send it back.
        self.peer_known.join(&vv);
        self.stats.peer_hlc = Some(hlc);
        self.stats.peer_hlc_at_ms = Some(now_ms);
        self.incoming = Some(Box::new(IncomingSnapshot {
            vv,
            hlc,
            rows_total,
            rows: Vec::new(),
            bytes: 0,
        }));
        self.push_event(SessionEvent::FullSyncStarted {
            direction: SyncDirection::Receiving,
            rows_total,
        });
    }

    pub(super) fn on_snapshot_chunk(&mut self, rows: Vec<SnapshotRow>) {
        let max = self.config.snapshot_bytes_max;
        let Some(inc) = self.incoming.as_mut() else {
            self.close(SessionError::UnexpectedMessage {
                message: "SnapshotChunk",
                state: "not receiving a snapshot",
            });
            return;
        };
        let mut error = None;
        for row in rows {
            if inc.rows.len() as u64 >= inc.rows_total {
                error = Some(SessionError::SnapshotRowCount {
                    announced: inc.rows_total,
                    got: inc.rows.len() as u64 + 1,
                });
                break;
            }
            let bytes = inc.bytes + row.bytes() as u64 + SNAPSHOT_ROW_ACCOUNTING_BYTES;
            if bytes > max {
                error = Some(SessionError::SnapshotTooLarge { max });
                break;
            }
            match RowImage::decode(&row.image) {
                Ok(image) => {
                    inc.bytes = bytes;
                    inc.rows.push((row.db, row.key, image));
                }
                Err(e) => {
                    error = Some(SessionError::SnapshotRow(e.to_string()));
                    break;
                }
            }
        }
        if let Some(e) = error {
            self.close(e);
        }
    }

    pub(super) fn on_snapshot_end(&mut self, engine: &mut Engine) {
        let Some(inc) = self.incoming.take() else {
            self.close(SessionError::UnexpectedMessage {
                message: "SnapshotEnd",
                state: "not receiving a snapshot",
            });
            return;
        };
        let got = inc.rows.len() as u64;
        if got != inc.rows_total {
            self.close(SessionError::SnapshotRowCount {
                announced: inc.rows_total,
                got,
            });
            return;
        }
        engine.merge_snapshot(Snapshot {
            vv: inc.vv,
            hlc: inc.hlc,
            rows: inc.rows,
        });
        self.stats.snapshots_received += 1;
        self.push_event(SessionEvent::FullSyncFinished {
            direction: SyncDirection::Receiving,
            rows: got,
        });
    }

    pub(super) fn start_snapshot(&mut self, engine: &Engine) {
        let snapshot = engine.snapshot();
        let rows_total = snapshot.rows.len() as u64;
        self.outbound = Outbound::FullSync(Box::new(OutgoingSnapshot {
            vv: snapshot.vv,
            hlc: snapshot.hlc,
            rows_total,
            rows: snapshot.rows.into(),
            pending: None,
            begun: false,
        }));
        self.push_event(SessionEvent::FullSyncStarted {
            direction: SyncDirection::Sending,
            rows_total,
        });
    }

    pub(super) fn next_snapshot_frame(&mut self) -> Option<Vec<u8>> {
        let Outbound::FullSync(out) = &mut self.outbound else {
            return None;
        };
        if !out.begun {
            out.begun = true;
            let msg = Message::SnapshotBegin {
                vv: out.vv.clone(),
                hlc: out.hlc,
                rows_total: out.rows_total,
            };
            return self.encode(msg);
        }
        let chunk_bytes_max = self.config.snapshot_chunk_bytes_max;
        let mut rows: Vec<SnapshotRow> = Vec::new();
        let mut bytes = 0usize;
        let mut too_large = None;
        loop {
            if rows.len() >= SNAPSHOT_CHUNK_ROWS_MAX {
                break;
            }
            let row = match out.pending.take() {
                Some(row) => row,
                None => match out.rows.pop_front() {
                    Some((db, key, image)) => SnapshotRow {
                        db,
                        key,
                        image: Bytes::from(image.encode()),
                    },
                    None => break,
                },
            };
            if row.bytes() > SNAPSHOT_ROW_BYTES_MAX {
                too_large = Some(SessionError::SnapshotRowTooLarge {
                    db: row.db,
                    bytes: row.bytes(),
                });
                break;
            }
            if !rows.is_empty() && bytes + row.bytes() > chunk_bytes_max {
                out.pending = Some(row);
                break;
            }
            bytes += row.bytes();
            rows.push(row);
        }
        if let Some(e) = too_large {
            self.close(e);
            return None;
        }
        if !rows.is_empty() {
            return self.encode(Message::SnapshotChunk { rows });
        }
        // Every row is out: the peer will hold the snapshot's vector, and
        // streaming resumes from there.
        let Outbound::FullSync(out) =
            std::mem::replace(&mut self.outbound, Outbound::Streaming { cursor: None })
        else {
            return None;
        };
        self.peer_known.join(&out.vv);
        self.stats.snapshots_sent += 1;
        self.push_event(SessionEvent::FullSyncFinished {
            direction: SyncDirection::Sending,
            rows: out.rows_total,
        });
        self.encode(Message::SnapshotEnd)
    }
}
