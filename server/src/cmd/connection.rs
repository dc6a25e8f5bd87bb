//! Connection commands: PING, ECHO, QUIT, HELLO, AUTH, SELECT, RESET.
//! Replies and errors are Redis 7.0's (`networking.c`, `acl.c`, `db.c`).

use bytes::Bytes;
use chorus_engine::reply::errors;
use chorus_engine::Reply;

use super::{lower, syntax_error, wrong_arity, Ctx};
use crate::connection::ReplyMode;
use crate::resp::parse::parse_i64_strict;
use crate::resp::Protocol;

/// What HELLO reports as `server`.
pub const SERVER_NAME: &str = "chorus";
/// The Redis release whose protocol and commands Chorus follows; reported
/// as `version` by HELLO and `redis_version` by INFO, because client
/// libraries gate features on it. Chorus's own version is `chorus_version`
/// in INFO.
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NO_PASSWORD_CONFIGURED: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
const BAD_CLIENT_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

pub fn ping(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if ctx.session.in_resp2_pubsub_mode() {
        // A subscribed RESP2 client can tell a reply from a message only by
        // its shape: Redis answers `[pong, message]`.
        let message = match args {
            [_] => Bytes::new(),
            [_, message] => message.clone(),
            _ => return wrong_arity("ping"),
        };
        return Reply::Array(vec![Reply::bulk(&b"pong"[..]), Reply::Bulk(message)]);
    }
    match args {
        [_] => Reply::Simple("PONG".to_string()),
        [_, message] => Reply::Bulk(message.clone()),
        _ => wrong_arity("ping"),
    }
}

pub fn echo(args: &[Bytes]) -> Reply {
    match args.get(1) {
        Some(message) => Reply::Bulk(message.clone()),
        None => wrong_arity("echo"),
    }
}

pub fn quit(ctx: &mut Ctx<'_>) -> Reply {
    ctx.session.close_after_reply = true;
    Reply::Ok
}

/// Checks the default user's password. Only the user `default` exists.
fn credentials_ok(ctx: &Ctx<'_>, user: &[u8], password: &[u8]) -> bool {
    if user != b"default" {
        return false;
    }
    match &ctx.settings.requirepass {
        None => true,
        Some(expected) => constant_time_eq(expected, password),
    }
}

/// Compares without an early exit, so response time does not reveal how
/// much of a guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

pub fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (user, password): (&[u8], &[u8]) = match args {
        [_, password] => {
            if ctx.settings.requirepass.is_none() {
                return Reply::err(NO_PASSWORD_CONFIGURED);
            }
            (b"default", password)
        }
        [_, user, password] => (user, password),
        [_, _, _, _, ..] => return syntax_error(),
        _ => return wrong_arity("auth"),
    };
    if credentials_ok(ctx, user, password) {
        ctx.session.authenticated = true;
        Reply::Ok
    } else {
        Reply::err(WRONGPASS)
    }
}

/// Redis's client-name rule: printable ASCII without spaces; empty clears.
pub fn set_client_name(ctx: &mut Ctx<'_>, name: &Bytes) -> Result<(), Reply> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(Reply::err(BAD_CLIENT_NAME));
    }
    ctx.session
        .set_name((!name.is_empty()).then(|| name.clone()));
    Ok(())
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`. As in Redis 7.0 the
/// options take effect in order while they are read (a SETNAME before a
/// bad option sticks), then authentication is required, then the protocol
/// switches and the server map is sent in the new protocol.
pub fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut protocol = None;
    let mut next = 1;
    if let Some(version) = args.get(1) {
        next = 2;
        match parse_i64_strict(version) {
            Some(2) => protocol = Some(Protocol::Resp2),
            Some(3) => protocol = Some(Protocol::Resp3),
            Some(_) => return Reply::err("NOPROTO unsupported protocol version"),
            None => return Reply::err("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut i = next;
    while let Some(option) = args.get(i) {
        let remaining = args.len() - 1 - i;
        let option_lower = lower(option);
        if option_lower == "auth" && remaining >= 2 {
            let user = args.get(i + 1).map(|b| b.as_ref()).unwrap_or_default();
            let password = args.get(i + 2).map(|b| b.as_ref()).unwrap_or_default();
            if !credentials_ok(ctx, user, password) {
                return Reply::err(WRONGPASS);
            }
            ctx.session.authenticated = true;
            i += 3;
        } else if option_lower == "setname" && remaining >= 1 {
            if let Some(name) = args.get(i + 1) {
                if let Err(reply) = set_client_name(ctx, name) {
                    return reply;
                }
            }
            i += 2;
        } else {
            let mut text = b"ERR Syntax error in HELLO option '".to_vec();
            text.extend_from_slice(super::c_str_prefix(option, usize::MAX));
            text.push(b'\'');
            return Reply::Error(super::error_text(&text));
        }
    }
    if ctx.session.auth_required(&ctx.settings) {
        return Reply::err(NOAUTH_HELLO);
    }
    if let Some(protocol) = protocol {
        ctx.session.set_protocol(protocol);
    }
    hello_map(ctx)
}

/// The map HELLO answers with (same keys and order as Redis 7.0).
pub fn hello_map(ctx: &Ctx<'_>) -> Reply {
    let text = |s: &str| Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()));
    Reply::Map(vec![
        (text("server"), text(SERVER_NAME)),
        (text("version"), text(REDIS_COMPAT_VERSION)),
        (text("proto"), Reply::Int(ctx.session.protocol.version())),
        (
            text("id"),
            Reply::Int(i64::try_from(ctx.session.id).unwrap_or(i64::MAX)),
        ),
        (text("mode"), text("standalone")),
        (text("role"), text("master")),
        (text("modules"), Reply::Array(Vec::new())),
    ])
}

pub fn select(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(index) = args.get(1) else {
        return wrong_arity("select");
    };
    let Some(index) = parse_i64_strict(index) else {
        return Reply::err(errors::NOT_INTEGER);
    };
    if i32::try_from(index).is_err() {
        return Reply::err(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        );
    }
    match u8::try_from(index) {
        Ok(db) if db < ctx.settings.databases => {
            ctx.session.set_db(db);
            Reply::Ok
        }
        _ => Reply::err(errors::DB_INDEX),
    }
}

/// `RESET`: back to a fresh connection's state (Redis 6.2+).
pub fn reset(ctx: &mut Ctx<'_>) -> Reply {
    ctx.server
        .pubsub
        .remove_all(ctx.session.id, &mut ctx.session.subscriptions);
    ctx.session.sync_pubsub_view();
    ctx.session.multi = None;
    ctx.session.watched.clear();
    ctx.session.set_db(0);
    ctx.session.set_protocol(Protocol::Resp2);
    ctx.session.set_name(None);
    ctx.session.reply_mode = ReplyMode::On;
    ctx.session.set_no_evict(false);
    // Back to the default user, which is authenticated only if it has no password.
    ctx.session.authenticated = ctx.settings.requirepass.is_none();
    Reply::Simple("RESET".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
