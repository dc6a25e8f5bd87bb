//! chorus-sim: deterministic simulation of Chorus sites.
