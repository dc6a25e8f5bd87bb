//! FUNCTION LOAD | DELETE | FLUSH | LIST | STATS | KILL | HELP and FCALL /
//! FCALL_RO (the calls are run by [`super::script`]), with Redis 7.0's
//! replies. Libraries live at this site only; FUNCTION DUMP and RESTORE
//! wait for Redis's RDB format.

use bytes::Bytes;
use chorus_engine::Reply;

use super::client::help_reply;
use super::{lower, Ctx};
use crate::script::{KillOutcome, ScriptVm, NOTBUSY_ERROR, UNKILLABLE_ERROR};

const HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn with_vm<R>(ctx: &Ctx<'_>, f: impl FnOnce(&mut ScriptVm) -> R) -> Result<R, Reply> {
    ctx.server.scripts.with_vm(f).map_err(Reply::Error)
}

pub fn run(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|a| lower(a)).unwrap_or_default();
    let out = match sub.as_str() {
        "load" => load(ctx, args),
        "delete" => {
            let name = String::from_utf8_lossy(args.get(2).map(|a| a.as_ref()).unwrap_or_default());
            with_vm(ctx, |vm| {
                if vm.functions.delete(&name) {
                    Reply::Ok
                } else {
                    Reply::err("ERR Library not found")
                }
            })
        }
        "flush" => match args.get(2).map(|a| lower(a)).as_deref() {
            None | Some("async") | Some("sync") if args.len() <= 3 => {
                with_vm(ctx, |vm| vm.functions.flush()).map(|()| Reply::Ok)
            }
            _ => Ok(Reply::err(
                "ERR FUNCTION FLUSH only supports SYNC|ASYNC option",
            )),
        },
        "list" => list(ctx, args),
        // Allowed while a script is busy: the figures are read without
        // waiting for the interpreter.
        "stats" => {
            let figures = ctx.server.scripts.figures();
            Ok(Reply::Map(vec![
                (bulk("running_script"), Reply::Nil),
                (
                    bulk("engines"),
                    Reply::Map(vec![(
                        bulk("LUA"),
                        Reply::Map(vec![
                            (
                                bulk("libraries_count"),
                                Reply::Int(figures.libraries as i64),
                            ),
                            (
                                bulk("functions_count"),
                                Reply::Int(figures.functions as i64),
                            ),
                        ]),
                    )]),
                ),
            ]))
        }
        "kill" => Ok(match ctx.server.scripts.run.kill() {
            KillOutcome::Killed => Reply::Ok,
            KillOutcome::NotBusy => Reply::err(NOTBUSY_ERROR),
            KillOutcome::Unkillable => Reply::err(UNKILLABLE_ERROR),
        }),
        "help" => Ok(help_reply(HELP)),
        "dump" | "restore" => Ok(Reply::err(
            "ERR FUNCTION DUMP and RESTORE are not supported by Chorus yet",
        )),
        _ => Ok(super::unknown_subcommand(
            args.first().map(|a| a.as_ref()).unwrap_or_default(),
            args.get(1).map(|a| a.as_ref()).unwrap_or_default(),
        )),
    };
    out.unwrap_or_else(|e| e)
}

fn load(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<Reply, Reply> {
    let mut replace = false;
    let mut i = 2;
    while let Some(arg) = args.get(i) {
        if i + 1 >= args.len() {
            break;
        }
        match lower(arg).as_str() {
            "replace" => replace = true,
            _ => return Ok(Reply::err("ERR Unknown option given: ").map_text(arg)),
        }
        i += 1;
    }
    let Some(code) = args.get(i) else {
        return Ok(super::wrong_arity("function|load"));
    };
    let code = code.clone();
    with_vm(ctx, |vm| match vm.load_library(&code, replace) {
        Ok(name) => Reply::Bulk(Bytes::from(name)),
        Err(e) => Reply::Error(e),
    })
}

trait MapText {
    fn map_text(self, arg: &[u8]) -> Reply;
}

impl MapText for Reply {
    /// Appends the argument to an error's text.
    fn map_text(self, arg: &[u8]) -> Reply {
        match self {
            Reply::Error(text) => Reply::Error(format!("{text}{}", String::from_utf8_lossy(arg))),
            other => other,
        }
    }
}

fn list(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<Reply, Reply> {
    let mut with_code = false;
    let mut pattern: Option<Bytes> = None;
    let mut i = 2;
    while let Some(arg) = args.get(i) {
        match lower(arg).as_str() {
            "withcode" => {
                with_code = true;
                i += 1;
            }
            "libraryname" => {
                let Some(p) = args.get(i + 1) else {
                    return Ok(Reply::err("ERR library name argument was not given"));
                };
                pattern = Some(p.clone());
                i += 2;
            }
            _ => {
                return Ok(Reply::Error(format!(
                    "ERR Unknown argument {}",
                    String::from_utf8_lossy(arg)
                )))
            }
        }
    }
    with_vm(ctx, |vm| {
        let mut out = Vec::new();
        for (name, library) in &vm.functions.libraries {
            if let Some(p) = &pattern {
                if !chorus_engine::redis::glob_match(p, name.as_bytes(), false) {
                    continue;
                }
            }
            let functions = library
                .functions
                .iter()
                .map(|f| {
                    Reply::Map(vec![
                        (bulk("name"), bulk(&f.name)),
                        (
                            bulk("description"),
                            f.description.as_deref().map_or(Reply::Nil, bulk),
                        ),
                        (
                            bulk("flags"),
                            Reply::Set(
                                f.flag_names()
                                    .into_iter()
                                    .map(|n| Reply::Simple(n.to_string()))
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect();
            let mut fields = vec![
                (bulk("library_name"), bulk(name)),
                (bulk("engine"), bulk("LUA")),
                (bulk("functions"), Reply::Array(functions)),
            ];
            if with_code {
                fields.push((bulk("library_code"), Reply::Bulk(library.code.clone())));
            }
            out.push(Reply::Map(fields));
        }
        Reply::Array(out)
    })
}
