//! chorus-replication: wire messages, the sans-IO peer session and the QUIC driver.
