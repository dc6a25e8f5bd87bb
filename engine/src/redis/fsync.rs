//! `appendfsync`: when the op log is fsynced, Redis's names and meanings.

use serde::{Deserialize, Serialize};

/// Redis's `appendfsync` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendFsync {
    /// After every write, before its reply is released.
    Always,
    /// Once a second.
    Everysec,
    /// Never explicitly (the OS decides).
    No,
}

impl AppendFsync {
    /// Every mode, in Redis's order.
    pub const ALL: [AppendFsync; 3] = [AppendFsync::Always, AppendFsync::Everysec, AppendFsync::No];

    /// `always`, `everysec` or `no`, any case.
    pub fn parse(s: &str) -> Option<AppendFsync> {
        AppendFsync::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    /// The mode's name as Redis spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AppendFsync::Always => "always",
            AppendFsync::Everysec => "everysec",
            AppendFsync::No => "no",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in AppendFsync::ALL {
            assert_eq!(AppendFsync::parse(m.as_str()), Some(m));
        }
        assert_eq!(AppendFsync::parse("EverySec"), Some(AppendFsync::Everysec));
        assert_eq!(AppendFsync::parse("sometimes"), None);
    }
}
