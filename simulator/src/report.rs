//! Running a seed safely and reporting it: the one-line JSON summary, the
//! reproduce command, and the process exit codes.

use crate::sim::{Outcome, RunConfig, Sim, Verdict};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// Exit codes of the `chorus-sim` binary (2 is clap's usage error).
pub const EXIT_PASS: i32 = 0;
pub const EXIT_SAFETY: i32 = 1;
pub const EXIT_LIVENESS: i32 = 3;
pub const EXIT_SIM_CRASH: i32 = 4;
pub const EXIT_NONDETERMINISM: i32 = 5;

/// One finished run, as reported.
#[derive(Debug)]
pub struct RunReport {
    pub config: RunConfig,
    /// `Err(panic message)` when the simulator itself crashed.
    pub outcome: Result<Outcome, String>,
    pub wall_ms: u64,
}

/// Runs one seed, catching a panic of the simulator (or of the code under test).
pub fn run_one(cfg: RunConfig) -> RunReport {
    let start = Instant::now();
    let c = cfg.clone();
    let outcome = catch_unwind(AssertUnwindSafe(move || Sim::new(c).run())).map_err(|e| {
        if let Some(s) = e.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = e.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic".to_owned()
        }
    });
    RunReport {
        config: cfg,
        outcome,
        wall_ms: start.elapsed().as_millis() as u64,
    }
}

impl RunReport {
    pub fn exit_code(&self) -> i32 {
        match &self.outcome {
            Err(_) => EXIT_SIM_CRASH,
            Ok(o) => match o.verdict {
                Verdict::Pass => EXIT_PASS,
                Verdict::Safety => EXIT_SAFETY,
                Verdict::Liveness => EXIT_LIVENESS,
            },
        }
    }

    pub fn passed(&self) -> bool {
        self.exit_code() == EXIT_PASS
    }

    pub fn result_name(&self) -> &'static str {
        match &self.outcome {
            Err(_) => "simulator-crash",
            Ok(o) => o.verdict.name(),
        }
    }

    /// The one-line JSON summary every run ends with.
    pub fn json(&self) -> String {
        let mut f: Vec<(String, String)> = vec![
            ("seed".into(), self.config.seed.to_string()),
            ("profile".into(), json_str(&self.config.profile)),
            ("result".into(), json_str(self.result_name())),
        ];
        match &self.outcome {
            Ok(o) => {
                f.push((
                    "violated".into(),
                    o.violation
                        .as_ref()
                        .map_or("null".into(), |v| json_str(&v.check)),
                ));
                f.push((
                    "detail".into(),
                    o.violation
                        .as_ref()
                        .map_or("null".into(), |v| json_str(&v.detail)),
                ));
                f.push(("sim_ms".into(), o.sim_ms.to_string()));
                f.push(("wall_ms".into(), self.wall_ms.to_string()));
                f.push(("events".into(), o.events.to_string()));
                f.push(("faults".into(), o.faults.to_string()));
                f.push(("trace_hash".into(), json_str(&o.trace_hash)));
                f.push((
                    "sites".into(),
                    o.config.sites.map_or_else(
                        || {
                            o.profile_line
                                .split_whitespace()
                                .find_map(|w| w.strip_prefix("sites="))
                                .unwrap_or("?")
                                .to_owned()
                        },
                        |n| n.to_string(),
                    ),
                ));
                f.push(("stats".into(), json_str(&o.stats.to_string())));
            }
            Err(msg) => {
                f.push(("violated".into(), json_str("simulator-crash")));
                f.push(("detail".into(), json_str(msg)));
                f.push(("wall_ms".into(), self.wall_ms.to_string()));
            }
        }
        if let Some(c) = self.config.canary {
            f.push(("canary".into(), json_str(c.name())));
        }
        if !self.passed() {
            if let Ok(o) = &self.outcome {
                f.push(("drawn".into(), json_str(&o.profile_line)));
            }
            f.push(("reproduce".into(), json_str(&self.config.command("run"))));
        }
        let body: Vec<String> = f.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
