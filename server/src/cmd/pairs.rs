//! RESP3 replies made of pairs: `ZRANGE ... WITHSCORES` and the other
//! sorted-set reads with scores, `ZPOPMIN`/`ZPOPMAX` with a count,
//! `ZRANDMEMBER ... WITHSCORES` and `HRANDFIELD ... WITHVALUES`.
//!
//! The engine answers them with a flat array (member, score, member, score...),
//! which is what Redis 7.0 sends in RESP2. In RESP3 Redis nests each pair in a
//! two-element array (`*2 *2 $1 a ,1 *2 $1 b ,2`). Whether a reply is made of
//! pairs depends on the command and its options, which the server has at hand,
//! so the reshaping is done here and the engine's replies stay
//! protocol-neutral. Only a successful array reply is reshaped: an error, a
//! null or an odd-length array is passed on untouched.

use bytes::Bytes;
use chorus_engine::Reply;

use super::table::CommandSpec;
use crate::resp::parse::parse_i64_strict;

/// True if `args`, run as `spec`, answers with pairs (when it succeeds).
pub fn has_pairs(spec: &CommandSpec, args: &[Bytes]) -> bool {
    let option_at =
        |i: usize, word: &[u8]| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(word));
    let option_from = |first: usize, word: &[u8]| {
        args.iter()
            .skip(first)
            .any(|a| a.eq_ignore_ascii_case(word))
    };
    match spec.name.as_str() {
        // key start stop [options]: an option word can only be an option
        // (LIMIT's arguments are integers).
        "zrange" | "zrangebyscore" | "zrevrange" | "zrevrangebyscore" => {
            option_from(4, b"withscores")
        }
        // numkeys key... [WEIGHTS w...] [AGGREGATE a] [WITHSCORES]
        "zunion" | "zinter" | "zdiff" => args
            .get(1)
            .and_then(|n| parse_i64_strict(n))
            .and_then(|n| usize::try_from(n).ok())
            .is_some_and(|numkeys| option_from(numkeys.saturating_add(2), b"withscores")),
        "zrandmember" => args.len() == 4 && option_at(3, b"withscores"),
        "hrandfield" => args.len() == 4 && option_at(3, b"withvalues"),
        // Without a count the reply is one flat pair, in RESP3 too.
        "zpopmin" | "zpopmax" => args.len() == 3,
        _ => false,
    }
}

/// Nests a flat array of pairs into an array of two-element arrays.
pub fn nest(reply: Reply) -> Reply {
    match reply {
        Reply::Array(items) if items.len() % 2 == 0 => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(a), Some(b)) = (it.next(), it.next()) {
                pairs.push(Reply::Array(vec![a, b]));
            }
            Reply::Array(pairs)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::table::CommandTable;

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn pairs(cmd: &str) -> bool {
        let a = args(&cmd.split(' ').collect::<Vec<_>>());
        let spec = a
            .first()
            .and_then(|n| CommandTable::redis().get(n))
            .map(|s| has_pairs(s, &a));
        spec.unwrap_or(false)
    }

    #[test]
    fn which_replies_are_pairs() {
        assert!(pairs("ZRANGE z 0 -1 WITHSCORES"));
        assert!(pairs("zrange z 0 -1 rev limit 0 1 withscores"));
        assert!(!pairs("ZRANGE withscores 0 -1"));
        assert!(pairs("ZREVRANGEBYSCORE z +inf -inf WITHSCORES"));
        assert!(!pairs("ZRANGEBYLEX z - + LIMIT 0 1"));
        assert!(pairs("ZUNION 2 a b WEIGHTS 1 2 WITHSCORES"));
        assert!(!pairs("ZUNION 1 withscores"));
        assert!(!pairs("ZINTER x a WITHSCORES"));
        assert!(pairs("ZRANDMEMBER z 2 WITHSCORES"));
        assert!(!pairs("ZRANDMEMBER z 2"));
        assert!(pairs("HRANDFIELD h -2 WITHVALUES"));
        assert!(pairs("ZPOPMIN z 2"));
        assert!(!pairs("ZPOPMAX z"));
        assert!(!pairs("HGETALL h"));
    }

    #[test]
    fn nesting() {
        let flat = Reply::Array(vec![
            Reply::bulk("a"),
            Reply::Double(1.0),
            Reply::bulk("b"),
            Reply::Double(2.0),
        ]);
        assert_eq!(
            nest(flat),
            Reply::Array(vec![
                Reply::Array(vec![Reply::bulk("a"), Reply::Double(1.0)]),
                Reply::Array(vec![Reply::bulk("b"), Reply::Double(2.0)]),
            ])
        );
        assert_eq!(nest(Reply::Array(vec![])), Reply::Array(vec![]));
        assert_eq!(nest(Reply::NilArray), Reply::NilArray);
        let err = Reply::err("ERR syntax error");
        assert_eq!(nest(err.clone()), err);
    }
}
