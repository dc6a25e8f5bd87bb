//! In-memory storage with durable vs volatile bytes (simulator, crash tests).
