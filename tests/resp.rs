//! The RESP codec (`twistor::framing::resp`): the value decoder on every type, its
//! limits (checked from the header, before the body arrives), a stream cut at every
//! byte boundary, a property round trip with the encoder, and the `RespReceiver`
//! framer on the testing kit. The request parser (the server side) is tested through
//! the kv example (`tests/kv.rs`).

use proptest::prelude::*;
use twistor::framing::resp::{
    put_command, DecodeError, Decoder, Limits, RespHandler, RespReceiver, Value,
};
use twistor::testing::Harness;
use twistor::{Context, Reason};

fn bulk(b: &str) -> Value {
    Value::Bulk(b.as_bytes().to_vec())
}

fn simple(s: &str) -> Value {
    Value::Simple(s.as_bytes().to_vec())
}

/// Every value in `input`, decoded from one buffer.
fn decode_all(input: &[u8], limits: Limits) -> (Vec<Value>, Result<usize, DecodeError>) {
    decode_chunks(&[input], limits)
}

/// Every value in `chunks`, fed one after the other as a connection would.
fn decode_chunks(chunks: &[&[u8]], limits: Limits) -> (Vec<Value>, Result<usize, DecodeError>) {
    let mut decoder = Decoder::new(limits);
    let mut buf = Vec::new();
    let mut values = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&buf) {
                Ok(Some((v, len))) => {
                    values.push(v);
                    buf.drain(..len);
                }
                Ok(None) => break,
                Err(e) => return (values, Err(e)),
            }
        }
    }
    (values, Ok(buf.len()))
}

/// One of each type, RESP2 and RESP3, and what it decodes to.
fn every_type() -> Vec<(&'static [u8], Value)> {
    vec![
        (b"+OK\r\n", simple("OK")),
        (b"+\r\n", simple("")),
        (
            b"-ERR unknown command\r\n",
            Value::Error(b"ERR unknown command".to_vec()),
        ),
        (b":0\r\n", Value::Integer(0)),
        (b":-9223372036854775808\r\n", Value::Integer(i64::MIN)),
        (b"$5\r\nhello\r\n", bulk("hello")),
        (b"$0\r\n\r\n", bulk("")),
        (b"$4\r\na\r\nb\r\n", bulk("a\r\nb")),
        (b"$-1\r\n", Value::Nil),
        (b"*0\r\n", Value::Array(vec![])),
        (b"*-1\r\n", Value::NilArray),
        (
            b"*3\r\n:1\r\n$1\r\nx\r\n*1\r\n$-1\r\n",
            Value::Array(vec![
                Value::Integer(1),
                bulk("x"),
                Value::Array(vec![Value::Nil]),
            ]),
        ),
        (b"_\r\n", Value::Null),
        (b"#t\r\n", Value::Boolean(true)),
        (b"#f\r\n", Value::Boolean(false)),
        (b",1.5\r\n", Value::Double(1.5)),
        (b",-3\r\n", Value::Double(-3.0)),
        (b",1e3\r\n", Value::Double(1000.0)),
        (b",inf\r\n", Value::Double(f64::INFINITY)),
        (b",-inf\r\n", Value::Double(f64::NEG_INFINITY)),
        (
            b"(3492890328409238509324850943850943825024385\r\n",
            Value::BigNumber(b"3492890328409238509324850943850943825024385".to_vec()),
        ),
        (b"(-1\r\n", Value::BigNumber(b"-1".to_vec())),
        (
            b"!21\r\nSYNTAX invalid syntax\r\n",
            Value::BlobError(b"SYNTAX invalid syntax".to_vec()),
        ),
        (
            b"=15\r\ntxt:Some string\r\n",
            Value::Verbatim {
                format: *b"txt",
                text: b"Some string".to_vec(),
            },
        ),
        (
            b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            Value::Map(vec![
                (simple("first"), Value::Integer(1)),
                (simple("second"), Value::Integer(2)),
            ]),
        ),
        (b"%0\r\n", Value::Map(vec![])),
        (
            b"~2\r\n+a\r\n#f\r\n",
            Value::Set(vec![simple("a"), Value::Boolean(false)]),
        ),
        (
            b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2\r\n",
            Value::Attribute {
                attributes: vec![(
                    simple("key-popularity"),
                    Value::Map(vec![(bulk("a"), Value::Double(0.19))]),
                )],
                value: Box::new(Value::Array(vec![Value::Integer(2)])),
            },
        ),
        (
            b"|0\r\n:7\r\n",
            Value::Attribute {
                attributes: vec![],
                value: Box::new(Value::Integer(7)),
            },
        ),
        (
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            Value::Push(vec![bulk("message"), bulk("ch"), bulk("hi")]),
        ),
        (
            b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n",
            Value::Array(vec![
                Value::Attribute {
                    attributes: vec![(simple("a"), simple("b"))],
                    value: Box::new(Value::Integer(1)),
                },
                Value::Integer(2),
            ]),
        ),
    ]
}

#[test]
fn every_type_decodes_and_encodes_back() {
    for (bytes, expected) in every_type() {
        let mut decoder = Decoder::default();
        let (value, len) = decoder.decode(bytes).unwrap().unwrap();
        assert_eq!(value, expected, "{:?}", bytes.escape_ascii().to_string());
        assert_eq!(len, bytes.len());
        assert!(decoder.is_idle());
        // The encoder gives the same bytes back, but for a double's spelling.
        if !bytes.contains(&b',') {
            assert_eq!(value.to_bytes(), bytes, "{value:?}");
        }
        let (again, _) = Decoder::default()
            .decode(&value.to_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(again, value);
    }
}

#[test]
fn nan_decodes() {
    let (v, _) = Decoder::default().decode(b",nan\r\n").unwrap().unwrap();
    assert!(matches!(v, Value::Double(d) if d.is_nan()));
    assert_eq!(v.to_bytes(), b",nan\r\n");
}

/// All the values of `every_type`, back to back.
fn stream() -> (Vec<u8>, Vec<Value>) {
    let mut bytes = Vec::new();
    let mut values = Vec::new();
    for (b, v) in every_type() {
        bytes.extend_from_slice(b);
        values.push(v);
    }
    (bytes, values)
}

#[test]
fn a_stream_cut_at_every_byte_boundary_gives_the_same_values() {
    let (bytes, values) = stream();
    let whole = decode_all(&bytes, Limits::default());
    assert_eq!(whole, (values.clone(), Ok(0)));
    for i in 0..=bytes.len() {
        let (a, b) = bytes.split_at(i);
        assert_eq!(
            decode_chunks(&[a, b], Limits::default()),
            whole,
            "cut at {i}"
        );
    }
    for size in 1..8 {
        let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
        assert_eq!(
            decode_chunks(&chunks, Limits::default()),
            whole,
            "chunks of {size}"
        );
    }
}

#[test]
fn an_incomplete_value_waits() {
    let (bytes, _) = stream();
    let mut decoder = Decoder::default();
    // The first value is whole after 5 bytes; every shorter prefix waits.
    for i in 0..5 {
        assert_eq!(decoder.decode(&bytes[..i]), Ok(None), "{i}");
    }
    assert_eq!(decoder.decode(&bytes[..5]).unwrap().unwrap().1, 5);
}

#[test]
fn malformed_input_is_refused_at_the_byte_that_shows_it() {
    let cases: &[(&[u8], DecodeError)] = &[
        (b"?\r\n", DecodeError::UnknownType(b'?')),
        (b"GET k\r\n", DecodeError::UnknownType(b'G')),
        (b"+OK\n", DecodeError::BadLineEnd),
        (b":12a\r\n", DecodeError::InvalidValue(b':')),
        (b":+1\r\n", DecodeError::InvalidValue(b':')),
        (b"$-2\r\n", DecodeError::InvalidLength(b'$')),
        (b"$x\r\n", DecodeError::InvalidLength(b'$')),
        (b"$01\r\nx\r\n", DecodeError::InvalidLength(b'$')),
        (b"*-2\r\n", DecodeError::InvalidLength(b'*')),
        (b"%-1\r\n", DecodeError::InvalidLength(b'%')),
        (b"$1\r\nab\r\n", DecodeError::MissingTerminator),
        (b"_x\r\n", DecodeError::InvalidValue(b'_')),
        (b"#x\r\n", DecodeError::InvalidValue(b'#')),
        (b",abc\r\n", DecodeError::InvalidValue(b',')),
        (b",infinity\r\n", DecodeError::InvalidValue(b',')),
        (b"(12x\r\n", DecodeError::InvalidValue(b'(')),
        (b"=3\r\ntxt\r\n", DecodeError::InvalidValue(b'=')),
        (b"$?\r\n", DecodeError::Streamed(b'$')),
        (b"*?\r\n", DecodeError::Streamed(b'*')),
        (b"*2\r\n:1\r\n?\r\n", DecodeError::UnknownType(b'?')),
    ];
    for (input, error) in cases {
        let (_, got) = decode_all(input, Limits::default());
        assert_eq!(got, Err(*error), "{:?}", input.escape_ascii().to_string());
    }
}

#[test]
fn limits_are_checked_from_the_header_before_the_body() {
    let small = Limits {
        max_bulk_bytes: 10,
        max_elements: 3,
        max_depth: 2,
        max_line_bytes: 16,
        max_value_bytes: 100,
    };
    let refused = |input: &[u8]| decode_all(input, small).1;
    // Headers alone, no body sent.
    assert_eq!(refused(b"$11\r\n"), Err(DecodeError::BulkTooLong(11)));
    assert_eq!(refused(b"$10\r\n"), Ok(5));
    assert_eq!(refused(b"!11\r\n"), Err(DecodeError::BulkTooLong(11)));
    assert_eq!(refused(b"=11\r\n"), Err(DecodeError::BulkTooLong(11)));
    assert_eq!(
        refused(b"$99999999999\r\n"),
        Err(DecodeError::BulkTooLong(99_999_999_999))
    );
    assert_eq!(refused(b"*4\r\n"), Err(DecodeError::TooManyElements(4)));
    assert_eq!(refused(b"*3\r\n"), Ok(4));
    assert_eq!(refused(b"%4\r\n"), Err(DecodeError::TooManyElements(4)));
    assert_eq!(refused(b"~4\r\n"), Err(DecodeError::TooManyElements(4)));
    assert_eq!(refused(b">4\r\n"), Err(DecodeError::TooManyElements(4)));
    assert_eq!(refused(b"|4\r\n"), Err(DecodeError::TooManyElements(4)));
    // Depth: two levels open, the third refused.
    assert_eq!(refused(b"*1\r\n*1\r\n*1\r\n"), Err(DecodeError::TooDeep));
    assert_eq!(refused(b"*1\r\n*1\r\n:1\r\n"), Ok(0));
    assert_eq!(
        refused(b"*1\r\n*1\r\n*0\r\n"),
        Ok(0),
        "an empty array opens nothing"
    );
    // Lines: refused once over the limit, newline or not.
    assert_eq!(refused(b"+0123456789abcdef"), Err(DecodeError::LineTooLong));
    assert_eq!(refused(b"+0123456789abc"), Ok(14));
    assert_eq!(refused(b"+0123456789abc\r\n"), Ok(0));
    assert_eq!(
        refused(b"+0123456789abcd\r\n"),
        Err(DecodeError::LineTooLong)
    );
    // A whole value over max_value_bytes, in one piece or not.
    let big = b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n";
    let long = Limits {
        max_value_bytes: 50,
        ..small
    };
    assert_eq!(decode_all(big, long).1, Err(DecodeError::ValueTooLong));
    let chunks: Vec<&[u8]> = big.chunks(7).collect();
    assert_eq!(
        decode_chunks(&chunks, long).1,
        Err(DecodeError::ValueTooLong)
    );
    assert_eq!(decode_all(big, small).1, Ok(0));
}

#[test]
fn a_decoder_resumes_after_an_error() {
    let mut decoder = Decoder::default();
    assert!(decoder.decode(b"*2\r\n:1\r\n?").is_err());
    assert!(decoder.is_idle());
    assert_eq!(
        decoder.decode(b":5\r\n").unwrap().unwrap().0,
        Value::Integer(5)
    );
}

#[test]
fn put_command_is_an_array_of_bulk_strings() {
    let mut out = Vec::new();
    put_command(&mut out, &[b"SET".as_slice(), b"k", b"a\r\nb"]);
    assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
    let (v, _) = Decoder::default().decode(&out).unwrap().unwrap();
    assert_eq!(
        v,
        Value::Array(vec![bulk("SET"), bulk("k"), bulk("a\r\nb")])
    );
    out.clear();
    put_command::<&str>(&mut out, &[]);
    assert_eq!(out, b"*0\r\n");
}

#[test]
fn simple_strings_and_errors_are_kept_on_one_line() {
    assert_eq!(simple("a\r\nb").to_bytes(), b"+a  b\r\n");
    assert_eq!(
        Value::Error(b"ERR x\ny".to_vec()).to_bytes(),
        b"-ERR x y\r\n"
    );
}

// ----- property: encode then decode -----

fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("one line", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        line_bytes().prop_map(Value::Simple),
        line_bytes().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bulk),
        Just(Value::Nil),
        Just(Value::NilArray),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |d| !d.is_nan())
            .prop_map(Value::Double),
        (any::<bool>(), "[0-9]{1,40}").prop_map(|(neg, digits)| {
            let sign = if neg { "-" } else { "" };
            Value::BigNumber(format!("{sign}{digits}").into_bytes())
        }),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::BlobError),
        (
            any::<[u8; 3]>(),
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(format, text)| Value::Verbatim { format, text }),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        let items = proptest::collection::vec(inner.clone(), 0..6);
        let pairs = proptest::collection::vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            items.clone().prop_map(Value::Array),
            items.clone().prop_map(Value::Set),
            items.prop_map(Value::Push),
            pairs.clone().prop_map(Value::Map),
            (pairs, inner).prop_map(|(attributes, value)| Value::Attribute {
                attributes,
                value: Box::new(value),
            }),
        ]
    })
}

proptest! {
    #[test]
    fn encode_then_decode_is_the_identity(values in proptest::collection::vec(value(), 1..5), cut in any::<prop::sample::Index>()) {
        let mut bytes = Vec::new();
        for v in &values {
            v.encode(&mut bytes);
        }
        let whole = decode_all(&bytes, Limits::default());
        prop_assert_eq!(&whole, &(values.clone(), Ok(0)));
        let i = cut.index(bytes.len() + 1);
        let (a, b) = bytes.split_at(i);
        prop_assert_eq!(decode_chunks(&[a, b], Limits::default()), whole);
    }
}

// ----- the framer -----

/// Records what a `RespReceiver` delivers; pauses after a value if asked.
#[derive(Default)]
struct Rec {
    values: Vec<Value>,
    errors: Vec<DecodeError>,
    pause_after: Option<usize>,
    lost: Option<Reason>,
}

impl RespHandler for Rec {
    fn value_received(&mut self, cx: &mut Context<'_>, value: Value) {
        self.values.push(value);
        if self.pause_after == Some(self.values.len()) {
            cx.pause_reading();
        }
    }

    fn decode_error(&mut self, cx: &mut Context<'_>, error: DecodeError) {
        self.errors.push(error);
        cx.lose_connection();
    }

    fn connection_lost(&mut self, _: &mut Context<'_>, reason: Reason) {
        self.lost = Some(reason);
    }
}

fn receiver_fed(chunks: &[&[u8]]) -> Harness<RespReceiver<Rec>> {
    let mut h = Harness::new(RespReceiver::new(Rec::default()));
    h.connect();
    for chunk in chunks {
        h.feed(chunk);
    }
    h
}

#[test]
fn the_receiver_delivers_the_same_values_at_every_cut() {
    let (bytes, values) = stream();
    for i in 0..=bytes.len() {
        let (a, b) = bytes.split_at(i);
        let h = receiver_fed(&[a, b]);
        assert_eq!(h.protocol().handler().values, values, "cut at {i}");
        assert_eq!(h.protocol().buffered(), 0);
    }
    let bytes_one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    let h = receiver_fed(&bytes_one_by_one);
    assert_eq!(h.protocol().handler().values, values);
}

#[test]
fn the_receiver_pauses_between_values_and_resumes() {
    let mut h = Harness::new(RespReceiver::new(Rec {
        pause_after: Some(1),
        ..Rec::default()
    }));
    h.connect();
    h.feed(b":1\r\n:2\r\n:3");
    assert_eq!(h.protocol().handler().values, [Value::Integer(1)]);
    assert!(h.reading_paused());
    h.call(|r: &mut RespReceiver<Rec>, cx| {
        r.handler_mut().pause_after = None;
        cx.resume_reading();
    });
    assert_eq!(
        h.protocol().handler().values,
        [Value::Integer(1), Value::Integer(2)]
    );
    h.feed(b"\r\n");
    assert_eq!(h.protocol().handler().values.len(), 3);
}

#[test]
fn the_receiver_stops_at_a_decode_error() {
    let h = receiver_fed(&[b":1\r\nGET k\r\n:2\r\n"]);
    let rec = h.protocol().handler();
    assert_eq!(rec.values, [Value::Integer(1)]);
    assert_eq!(rec.errors, [DecodeError::UnknownType(b'G')]);
    assert!(h.protocol().is_broken());
    assert!(rec.lost.is_some());
}

#[test]
fn the_receiver_refuses_a_big_bulk_from_its_header() {
    let limits = Limits {
        max_bulk_bytes: 1024,
        ..Limits::default()
    };
    let mut h = Harness::new(RespReceiver::with_limits(Rec::default(), limits));
    h.connect();
    h.feed(b"$1025\r\n");
    assert_eq!(
        h.protocol().handler().errors,
        [DecodeError::BulkTooLong(1025)]
    );
    assert_eq!(h.protocol().buffered(), 0);
}
