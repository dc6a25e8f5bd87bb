//! LATENCY LATEST / HISTORY / RESET / GRAPH / DOCTOR / HISTOGRAM / HELP
//! (Redis 7.0 `latency.c`); the monitor is [`crate::latency`], fed by
//! [`super::call`], and HISTOGRAM reads the per-command histograms of
//! `INFO latencystats` ([`crate::cmdstats`]).

use bytes::Bytes;
use chorus_engine::Reply;

use super::client::help_reply;
use super::table::CommandTable;
use super::{lower, Ctx};

const HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

const DOCTOR_DISABLED: &str = "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n";
const DOCTOR_QUIET: &str = "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sleep tonight.\n";

fn int(n: u64) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn unix_secs() -> u64 {
    crate::store::now_ms() / 1000
}

pub fn run(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let monitor = &ctx.server.latency;
    let sub = lower(args.get(1).map(|a| a.as_ref()).unwrap_or_default());
    let event = args.get(2).map(|a| String::from_utf8_lossy(a).into_owned());
    match (sub.as_str(), args.len(), event) {
        ("latest", 2, _) => Reply::Array(
            monitor
                .events()
                .into_iter()
                .filter_map(|(name, s)| {
                    let last = s.samples.last()?;
                    Some(Reply::Array(vec![
                        Reply::Bulk(Bytes::from_static(name.as_bytes())),
                        int(last.unix_secs),
                        int(last.ms),
                        int(s.max_ms),
                    ]))
                })
                .collect(),
        ),
        ("history", 3, Some(event)) => Reply::Array(
            monitor
                .series(&event)
                .map(|s| s.samples)
                .unwrap_or_default()
                .into_iter()
                .map(|s| Reply::Array(vec![int(s.unix_secs), int(s.ms)]))
                .collect(),
        ),
        ("graph", 3, Some(event)) => match monitor.series(&event) {
            Some(s) if !s.samples.is_empty() => {
                Reply::Verbatim(crate::latency::graph(&event, &s, unix_secs()))
            }
            _ => Reply::Error(format!("ERR No samples available for event '{event}'")),
        },
        ("reset", _, _) => {
            let events: Vec<String> = args
                .iter()
                .skip(2)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            int(monitor.reset(&events) as u64)
        }
        ("doctor", 2, _) => Reply::Verbatim(doctor(ctx)),
        ("histogram", _, _) => histogram(ctx, args),
        ("help", 2, _) => help_reply(HELP),
        _ => super::subcommand_syntax_error(args),
    }
}

/// Redis's report, for its first parts: disabled, no spike, or each
/// event with its spikes, average, mean deviation, period and worst.
fn doctor(ctx: &Ctx<'_>) -> String {
    let events = ctx.server.latency.events();
    if events.is_empty() {
        return if ctx.settings.latency_monitor_threshold_ms == 0 {
            DOCTOR_DISABLED.to_string()
        } else {
            DOCTOR_QUIET.to_string()
        };
    }
    let mut out = String::from(
        "Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n",
    );
    for (i, (name, s)) in events.iter().enumerate() {
        let n = s.samples.len().max(1) as u64;
        let avg = s.samples.iter().map(|x| x.ms).sum::<u64>() / n;
        let mad = s.samples.iter().map(|x| x.ms.abs_diff(avg)).sum::<u64>() / n;
        let period = match (s.samples.first(), s.samples.last()) {
            (Some(a), Some(b)) if s.samples.len() > 1 => {
                (b.unix_secs - a.unix_secs) as f64 / (s.samples.len() - 1) as f64
            }
            _ => 0.0,
        };
        out.push_str(&format!(
            "{}. {name}: {} latency spikes (average {avg}ms, mean deviation {mad}ms, period {period:.2} sec). Worst all time event {}ms.\n",
            i + 1,
            s.samples.len(),
            s.max_ms
        ));
    }
    out
}

/// `LATENCY HISTOGRAM [command ...]`: per command, its calls and the
/// cumulative count at 1, 2, 4, 8... microseconds.
fn histogram(ctx: &Ctx<'_>, args: &[Bytes]) -> Reply {
    let table = CommandTable::redis();
    let stats = &ctx.server.stats.commands;
    let mut wanted: Vec<(String, usize)> = Vec::new();
    if args.len() <= 2 {
        for top in table.iter() {
            for c in std::iter::once(top.command()).chain(top.subcommands.iter()) {
                wanted.push((c.name.clone(), c.id));
            }
        }
        wanted.sort();
    } else {
        for name in args.iter().skip(2) {
            let lowered = lower(name);
            let found = match lowered.split_once('|') {
                Some((top, sub)) => table
                    .get(top.as_bytes())
                    .and_then(|t| t.subcommand(sub.as_bytes())),
                None => table.get(lowered.as_bytes()),
            };
            // A name given twice is answered twice, as by Redis.
            if let Some(spec) = found {
                wanted.push((spec.name.clone(), spec.id));
            }
        }
    }
    Reply::Map(
        wanted
            .into_iter()
            .filter_map(|(name, id)| {
                let (calls, buckets) = stats.cumulative(id)?;
                let histogram = buckets
                    .into_iter()
                    .map(|(usec, count)| (int(usec), int(count)))
                    .collect();
                Some((
                    Reply::Bulk(Bytes::from(name)),
                    Reply::Map(vec![
                        (Reply::Bulk(Bytes::from_static(b"calls")), int(calls)),
                        (
                            Reply::Bulk(Bytes::from_static(b"histogram_usec")),
                            Reply::Map(histogram),
                        ),
                    ]),
                ))
            })
            .collect(),
    )
}
