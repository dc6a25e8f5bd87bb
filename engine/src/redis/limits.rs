//! Redis's fixed limits that Chorus shares.

/// Databases per site (Redis's default `databases`; Chorus serves at most
/// this many, numbered `0..DATABASES`).
pub const DATABASES: usize = 16;
