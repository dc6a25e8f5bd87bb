//! Real storage: op log file + redb database for checkpoints and metadata.
