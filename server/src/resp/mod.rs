//! RESP wire format: the request parser, the reply encoder, and a reply
//! decoder (the client side, for the embedded command table and tests).

pub mod decode;
pub mod encode;
pub mod parse;

pub use encode::{encode, format_double, Protocol};
pub use parse::{ParseLimits, ProtocolError, RequestParser};
