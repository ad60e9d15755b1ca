//! The kv example's RESP: the library's server-side codec
//! ([`twistor::framing::resp`]: `RequestParser` and the reply encoders), under the
//! names the example and its tests use.

// The server and the tests each use a different part of this file.
#![allow(unused_imports)]

pub use twistor::framing::resp::{
    decimal, parse_i64, put_array_len, put_bulk, put_bulk_len, put_decimal, put_error, put_int,
    put_simple, Args, RequestError as ProtocolError, RequestParser as Parser, MAX_BULK_BYTES,
    MAX_INLINE_BYTES, MAX_MULTIBULK_LEN, NIL, OK,
};
