//! Validation of one parameter's value, as `CONFIG SET`, a config file line
//! or a flag gives it: the checks and error strings of Redis 7.0, per kind
//! of parameter and for each special one, returning the value as `CONFIG
//! GET` prints it.

use super::params::{ParamKind, ParamSpec, Special};
use super::value::{
    c_strtoll, check_bounds, format_number, parse_memory, parse_number, parse_redis_double,
    trim_double,
};
use super::{ConfigStore, BIND_ADDRESSES_MAX, HZ_MAX, HZ_MIN};

impl ConfigStore {
    /// Validates `words` for `spec` and returns the value as `CONFIG GET`
    /// will print it. `from_file`: the value comes from a config file or
    /// flag (only `save` behaves differently there).
    pub(super) fn parse_value(
        &mut self,
        spec: &ParamSpec,
        words: &[String],
        index: usize,
        from_file: bool,
    ) -> Result<String, String> {
        let first = words.first().map(String::as_str).unwrap_or("");
        match spec.kind {
            ParamKind::Bool => match first.to_ascii_lowercase().as_str() {
                "yes" => Ok("yes".to_string()),
                "no" => Ok("no".to_string()),
                _ => Err("argument must be 'yes' or 'no'".to_string()),
            },
            ParamKind::Str => Ok(first.to_string()),
            ParamKind::Enum(choices) => {
                let Some(&(_, id)) = choices.iter().find(|(n, _)| n.eq_ignore_ascii_case(first))
                else {
                    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "argument(s) must be one of the following: {}",
                        names.join(", ")
                    ));
                };
                let canonical = choices
                    .iter()
                    .find(|(_, v)| *v == id)
                    .map(|(n, _)| *n)
                    .unwrap_or(first);
                Ok(canonical.to_string())
            }
            ParamKind::Number {
                min,
                max,
                unsigned,
                format,
            } => {
                let value = parse_number(first, format)?;
                check_bounds(value, min, max, unsigned, format)?;
                let value = if spec.name == "hz" {
                    value.clamp(HZ_MIN, HZ_MAX)
                } else {
                    value
                };
                Ok(format_number(value, format))
            }
            ParamKind::Special(which) => self.parse_special(which, words, index, from_file),
        }
    }

    fn parse_special(
        &mut self,
        which: Special,
        words: &[String],
        index: usize,
        from_file: bool,
    ) -> Result<String, String> {
        let first = words.first().map(String::as_str).unwrap_or("");
        match which {
            Special::Dir => {
                if words.len() != 1 {
                    return Err("wrong number of arguments".to_string());
                }
                // The engine owns the data directory for the life of the
                // process; moving it at runtime would split the op log.
                if !from_file {
                    return Err("Chorus cannot change its data directory at runtime".to_string());
                }
                Ok(first.to_string())
            }
            Special::Save => {
                let words: &[String] = if words.len() == 1 && first.is_empty() {
                    &[]
                } else {
                    words
                };
                if !words.len().is_multiple_of(2) {
                    return Err("Invalid save parameters".to_string());
                }
                let mut parts = Vec::new();
                for (i, w) in words.iter().enumerate() {
                    let v = c_strtoll(w, 10).ok_or("Invalid save parameters")?;
                    if (i % 2 == 0 && v < 1) || (i % 2 == 1 && v < 0) {
                        return Err("Invalid save parameters".to_string());
                    }
                    parts.push(v.to_string());
                }
                let mut joined = parts.join(" ");
                // In a config file each `save` line adds a rule; the first
                // one replaces the defaults.
                if from_file {
                    if self.save_loaded_from_file && !joined.is_empty() {
                        let old = self.values.get(index).cloned().unwrap_or_default();
                        if !old.is_empty() {
                            joined = format!("{old} {joined}");
                        }
                    }
                    self.save_loaded_from_file = true;
                }
                Ok(joined)
            }
            Special::ClientOutputBufferLimit => {
                let current = self.values.get(index).cloned().unwrap_or_default();
                parse_client_output_buffer_limit(&current, words)
            }
            Special::OomScoreAdjValues => {
                if words.len() != 3 {
                    return Err("wrong number of arguments".to_string());
                }
                let mut out = Vec::new();
                for w in words {
                    match c_strtoll(w, 10) {
                        Some(v) if (-2000..=2000).contains(&v) => out.push(v.to_string()),
                        _ => {
                            return Err("Invalid oom-score-adj-values, elements must be between -2000 and 2000.".to_string())
                        }
                    }
                }
                Ok(out.join(" "))
            }
            Special::NotifyKeyspaceEvents => {
                if words.len() != 1 {
                    return Err("wrong number of arguments".to_string());
                }
                keyspace_events_normalize(first).ok_or_else(|| {
                    "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string()
                })
            }
            Special::Bind => {
                if words.len() > BIND_ADDRESSES_MAX {
                    return Err("Too many bind addresses specified.".to_string());
                }
                if words.len() == 1 && first.is_empty() {
                    return Ok(String::new());
                }
                Ok(words.join(" "))
            }
            Special::ReplicaOf => {
                if words.len() != 2 {
                    return Err("wrong number of arguments".to_string());
                }
                let host = first;
                let port = words.get(1).map(String::as_str).unwrap_or("");
                if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
                    return Ok(String::new());
                }
                match c_strtoll(port, 10) {
                    Some(p) if (0..=65535).contains(&p) => Ok(format!("{host} {p}")),
                    _ => Err("Invalid master port".to_string()),
                }
            }
            Special::LatencyTrackingInfoPercentiles => {
                if words.len() == 1 && first.is_empty() {
                    return Ok(String::new());
                }
                let mut out = Vec::new();
                for w in words {
                    let v: f64 = parse_redis_double(w)
                        .ok_or("Invalid latency-tracking-info-percentiles parameters")?;
                    if !(0.0..=100.0).contains(&v) {
                        return Err("latency-tracking-info-percentiles parameters should sit between [0.0,100.0]".to_string());
                    }
                    out.push(trim_double(&format!("{v:.6}")));
                }
                Ok(out.join(" "))
            }
            Special::ShutdownOnSignal => {
                const FLAGS: [&str; 5] = ["default", "save", "nosave", "now", "force"];
                let mut set = [false; 5];
                for w in words {
                    let Some(i) = FLAGS.iter().position(|f| f.eq_ignore_ascii_case(w)) else {
                        return Err(format!(
                            "argument(s) must be one of the following: {}",
                            FLAGS.join(", ")
                        ));
                    };
                    if let Some(flag) = set.get_mut(i) {
                        *flag = true;
                    }
                }
                if set[1] && set[2] {
                    return Err("shutdown-on-sig* can't be both save and nosave".to_string());
                }
                let names: Vec<&str> = FLAGS
                    .iter()
                    .zip(set)
                    .skip(1)
                    .filter(|(_, on)| *on)
                    .map(|(n, _)| *n)
                    .collect();
                Ok(if names.is_empty() {
                    "default".to_string()
                } else {
                    names.join(" ")
                })
            }
            Special::DbFilename => {
                if first.contains('/') {
                    return Err("dbfilename can't be a path, just a filename".to_string());
                }
                Ok(first.to_string())
            }
            Special::AofFilename => {
                if first.is_empty() {
                    return Err("appendfilename can't be empty".to_string());
                }
                if first.contains('/') {
                    return Err("appendfilename can't be a path, just a filename".to_string());
                }
                Ok(first.to_string())
            }
            Special::AofDirname => {
                if first.is_empty() {
                    return Err("appenddirname can't be empty".to_string());
                }
                if first.contains('/') {
                    return Err("appenddirname can't be a path, just a dirname".to_string());
                }
                Ok(first.to_string())
            }
            Special::AnnouncedHostname => {
                if first.len() >= 256 {
                    return Err("Hostnames must be less than 256 characters".to_string());
                }
                if !first
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
                {
                    return Err(
                        "Hostnames may only contain alphanumeric characters, hyphens or dots"
                            .to_string(),
                    );
                }
                Ok(first.to_string())
            }
            Special::ProcTitleTemplate => {
                if !proc_title_template_is_valid(first) {
                    return Err(
                        "template format is invalid or contains unknown variables".to_string()
                    );
                }
                Ok(first.to_string())
            }
        }
    }
}

/// `notify-keyspace-events`: validates the class letters and prints them in
/// Redis's canonical order (`keyspaceEventsFlagsToString`).
fn keyspace_events_normalize(classes: &str) -> Option<String> {
    crate::notify::EventFlags::parse(classes).map(crate::notify::EventFlags::canonical)
}

/// Redis's `validateProcTitleTemplate`: `{...}` variables must be known and
/// braces balanced.
fn proc_title_template_is_valid(template: &str) -> bool {
    const KNOWN: [&str; 7] = [
        "title",
        "listen-addr",
        "server-mode",
        "port",
        "tls-port",
        "unixsocket",
        "config-file",
    ];
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        let Some(tail) = rest.get(open..) else {
            return false;
        };
        if tail.starts_with('}') {
            return false;
        }
        let Some(close) = tail.find('}') else {
            return false;
        };
        let name = tail.get(1..close).unwrap_or("");
        if !KNOWN.contains(&name) {
            return false;
        }
        rest = tail.get(close + 1..).unwrap_or("");
    }
    // Redis also requires the expanded title to be non-empty.
    !template.trim().is_empty()
}

fn parse_client_output_buffer_limit(current: &str, words: &[String]) -> Result<String, String> {
    const CLASSES: [&str; 3] = ["normal", "slave", "pubsub"];
    let mut limits: Vec<[String; 3]> = CLASSES
        .iter()
        .map(|class| {
            let mut it = current.split(' ').skip_while(|w| w != class).skip(1);
            [
                it.next().unwrap_or("0").to_string(),
                it.next().unwrap_or("0").to_string(),
                it.next().unwrap_or("0").to_string(),
            ]
        })
        .collect();
    if !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".to_string());
    }
    let mut updates = Vec::new();
    for group in words.chunks(4) {
        let [class, hard, soft, seconds] = group else {
            return Err("Wrong number of arguments in buffer limit configuration.".to_string());
        };
        let slot = match class.to_ascii_lowercase().as_str() {
            "normal" => 0,
            "slave" | "replica" => 1,
            "pubsub" => 2,
            _ => {
                return Err(
                    "Invalid client class specified in buffer limit configuration.".to_string(),
                )
            }
        };
        let (Some(hard), Some(soft), Some(seconds)) = (
            parse_memory(hard),
            parse_memory(soft),
            c_strtoll(seconds, 10),
        ) else {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                    .to_string(),
            );
        };
        if seconds < 0 {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                    .to_string(),
            );
        }
        updates.push((
            slot,
            [hard.to_string(), soft.to_string(), seconds.to_string()],
        ));
    }
    for (slot, values) in updates {
        if let Some(entry) = limits.get_mut(slot) {
            *entry = values;
        }
    }
    Ok(CLASSES
        .iter()
        .zip(&limits)
        .map(|(class, [h, s, sec])| format!("{class} {h} {s} {sec}"))
        .collect::<Vec<_>>()
        .join(" "))
}
