//! set commands (being written).

use super::Spec;

pub static COMMANDS: &[Spec] = &[];
