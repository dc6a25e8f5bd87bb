//! Decodes RESP2/RESP3 *replies* into [`Reply`](chorus_engine::Reply)
//! values: the client side of the protocol, for tests and tools. The
//! decoder is the engine's (it reads the embedded command table).

pub use chorus_engine::redis::decode::{
    decode_reply, DecodeError, REPLY_DEPTH_MAX, REPLY_ELEMENTS_MAX,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode::{encode_to_vec, Protocol};
    use chorus_engine::Reply;

    #[test]
    fn round_trips_resp3() {
        let reply = Reply::Array(vec![
            Reply::Ok,
            Reply::Simple("PONG".into()),
            Reply::Error("ERR x".into()),
            Reply::Int(-5),
            Reply::bulk("abc"),
            Reply::Nil,
            Reply::Double(1.5),
            Reply::Map(vec![(Reply::bulk("k"), Reply::Set(vec![Reply::Int(1)]))]),
            Reply::Bool(true),
            Reply::Verbatim("hi".into()),
        ]);
        let bytes = encode_to_vec(&reply, Protocol::Resp3);
        assert_eq!(decode_reply(&bytes), Ok(Some((reply, bytes.len()))));
        for cut in 0..bytes.len() {
            assert_eq!(decode_reply(bytes.get(..cut).unwrap_or_default()), Ok(None));
        }
    }

    #[test]
    fn rejects_deep_nesting() {
        let bytes = "*1\r\n".repeat(REPLY_DEPTH_MAX + 2);
        assert_eq!(decode_reply(bytes.as_bytes()), Err(DecodeError::TooDeep));
    }
}
