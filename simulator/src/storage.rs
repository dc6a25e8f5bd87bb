//! A site's disk as the simulator sees it: a [`MemoryStorage`] the engine owns
//! through `Box<dyn Storage>` while the simulator keeps a second handle to it,
//! so it can cut the power (keep only durable bytes, maybe a torn tail), read
//! the op log the engine wrote (for the causality and OpId checkers), and wipe
//! the disk. The mutex is never contended: the simulation is single-threaded;
//! it exists because `Storage` must be `Send`.

use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::storage::{CheckpointRow, CheckpointWriter, Storage, StorageError};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Debug, Default)]
pub struct SharedDisk(Arc<Mutex<MemoryStorage>>);

impl SharedDisk {
    pub fn new() -> SharedDisk {
        SharedDisk::default()
    }

    pub fn lock(&self) -> MutexGuard<'_, MemoryStorage> {
        // Poisoning needs a panic while locked, which aborts the run anyway.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A disk holding `image` (a backup put back: see `Sim`'s restore).
    pub fn from_image(image: MemoryStorage) -> SharedDisk {
        SharedDisk(Arc::new(Mutex::new(image)))
    }

    /// A storage handle for `Engine::open`.
    pub fn boxed(&self) -> Box<dyn Storage> {
        Box::new(self.clone())
    }
}

impl Storage for SharedDisk {
    fn log_append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.lock().log_append(bytes)
    }
    fn log_sync(&mut self) -> Result<(), StorageError> {
        self.lock().log_sync()
    }
    fn log_len(&self) -> u64 {
        self.lock().log_len()
    }
    fn log_read(&mut self, offset: u64, bytes_max: usize) -> Result<Vec<u8>, StorageError> {
        self.lock().log_read(offset, bytes_max)
    }
    fn log_trim_before(&mut self, offset: u64) -> Result<(), StorageError> {
        self.lock().log_trim_before(offset)
    }
    fn log_truncate(&mut self, offset: u64) -> Result<(), StorageError> {
        self.lock().log_truncate(offset)
    }
    fn log_start(&self) -> u64 {
        self.lock().log_start()
    }
    fn checkpoint_write(
        &mut self,
        rows: &[CheckpointRow],
        meta: &[u8],
    ) -> Result<(), StorageError> {
        self.lock().checkpoint_write(rows, meta)
    }
    fn checkpoint_read(&mut self) -> Result<(Vec<CheckpointRow>, Option<Vec<u8>>), StorageError> {
        self.lock().checkpoint_read()
    }
    fn meta_put(&mut self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        self.lock().meta_put(name, value)
    }
    fn meta_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.lock().meta_get(name)
    }
    fn describe(&self) -> String {
        "sim-memory".to_owned()
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn checkpoint_writer(&mut self) -> Option<Box<dyn CheckpointWriter>> {
        Some(Box::new(self.clone()))
    }
}

/// The simulator writes a captured checkpoint when its `CheckpointWritten`
/// event comes (the virtual time a write takes), through a second handle to
/// the same disk; a crash before then drops it unwritten.
impl CheckpointWriter for SharedDisk {
    fn write(self: Box<Self>, rows: &[CheckpointRow], meta: &[u8]) -> Result<(), StorageError> {
        self.lock().checkpoint_write(rows, meta)
    }
}
