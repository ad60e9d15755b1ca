//! The decoder and encoder together: RFC 6455's rules, chunking, limits, the
//! extension seam, round trips.

use proptest::prelude::*;

use super::*;

/// An event, owned, or the error that ended the input.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Error(DecodeError),
}

impl From<Event<'_>> for Ev {
    fn from(event: Event<'_>) -> Ev {
        match event {
            Event::Text(t) => Ev::Text(t.to_owned()),
            Event::Binary(b) => Ev::Binary(b.to_vec()),
            Event::Ping(p) => Ev::Ping(p.to_vec()),
            Event::Pong(p) => Ev::Pong(p.to_vec()),
            Event::Close(c) => Ev::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
        }
    }
}

fn text(t: &str) -> Ev {
    Ev::Text(t.to_owned())
}

fn err(e: DecodeError) -> Ev {
    Ev::Error(e)
}

/// Feeds `chunks` in order and collects the events; an error is recorded once and
/// ends the run.
fn run<X: Extension>(decoder: &mut Decoder<X>, chunks: &[&[u8]]) -> Vec<Ev> {
    let mut events = Vec::new();
    for chunk in chunks {
        let mut feed = decoder.feed(chunk);
        loop {
            match feed.next_event() {
                Ok(Some(event)) => events.push(event.into()),
                Ok(None) => break,
                Err(e) => {
                    events.push(err(e));
                    return events;
                }
            }
        }
    }
    events
}

fn decode(role: Role, input: &[u8]) -> Vec<Ev> {
    run(&mut Decoder::new(role), &[input])
}

/// The first error `input` gets from a decoder for `role`, checked against the close
/// code it maps to.
fn decode_error(role: Role, input: &[u8], code: CloseCode) -> DecodeError {
    let events = decode(role, input);
    let Some(Ev::Error(e)) = events.last() else {
        panic!("no error: {events:?}");
    };
    assert_eq!(e.close_code(), code, "{e:?}");
    *e
}

const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2: u8 = 0x20;
const RSV3: u8 = 0x10;
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A frame with first byte `b0`, the shortest length, masked with `mask` if given.
fn raw(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let body = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[body..], key);
    }
    out
}

/// A frame as a client sends it (masked), for a server to decode.
fn c(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw(b0, payload, Some(KEY))
}

/// A frame as a server sends it (unmasked), for a client to decode.
fn s(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw(b0, payload, None)
}

/// A frame as `role`'s peer sends it.
fn from_peer(role: Role, b0: u8, payload: &[u8]) -> Vec<u8> {
    match role {
        Role::Server => c(b0, payload),
        Role::Client => s(b0, payload),
    }
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], reason].concat()
}

// ----- valid traffic -----

#[test]
fn single_frames_of_every_kind() {
    for role in [Role::Server, Role::Client] {
        let input = [
            from_peer(role, FIN | TEXT, "héllo".as_bytes()),
            from_peer(role, FIN | BINARY, &[0, 1, 2]),
            from_peer(role, FIN | TEXT, b""),
            from_peer(role, FIN | PING, b"p"),
            from_peer(role, FIN | PONG, b""),
            from_peer(role, FIN | CLOSE, &close_payload(1001, b"bye")),
        ]
        .concat();
        assert_eq!(
            decode(role, &input),
            [
                text("héllo"),
                Ev::Binary(vec![0, 1, 2]),
                text(""),
                Ev::Ping(b"p".to_vec()),
                Ev::Pong(vec![]),
                Ev::Close(Some((1001, "bye".to_owned()))),
            ]
        );
    }
}

#[test]
fn lengths_at_the_16_and_64_bit_boundaries() {
    for role in [Role::Server, Role::Client] {
        for len in [125, 126, 127, 0xFFFF, 0x1_0000, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let input = from_peer(role, FIN | BINARY, &payload);
            assert_eq!(decode(role, &input), [Ev::Binary(payload)], "{len}");
        }
    }
}

#[test]
fn fragments_are_reassembled_with_control_frames_between_them() {
    for role in [Role::Server, Role::Client] {
        let input = [
            from_peer(role, TEXT, b"frag"),
            from_peer(role, FIN | PING, b"1"),
            from_peer(role, CONT, b""),
            from_peer(role, FIN | PONG, b"2"),
            from_peer(role, FIN | CONT, b"ments"),
            from_peer(role, BINARY, &[1]),
            from_peer(role, FIN | PING, b""),
            from_peer(role, FIN | CONT, &[2]),
        ]
        .concat();
        assert_eq!(
            decode(role, &input),
            [
                Ev::Ping(b"1".to_vec()),
                Ev::Pong(b"2".to_vec()),
                text("fragments"),
                Ev::Ping(vec![]),
                Ev::Binary(vec![1, 2]),
            ]
        );
    }
}

#[test]
fn a_character_split_between_fragments_is_valid() {
    // "€" is E2 82 AC; "𝄞" is F0 9D 84 9E.
    let input = [
        c(TEXT, b"a\xe2"),
        c(CONT, b"\x82"),
        c(CONT, b"\xac\xf0\x9d"),
        c(FIN | PING, b""),
        c(CONT, b"\x84"),
        c(FIN | CONT, b"\x9ez"),
    ]
    .concat();
    assert_eq!(
        decode(Role::Server, &input),
        [Ev::Ping(vec![]), text("a€𝄞z")]
    );
}

#[test]
fn empty_fragmented_messages() {
    let input = [
        c(TEXT, b""),
        c(CONT, b""),
        c(FIN | CONT, b""),
        c(FIN | BINARY, b""),
    ]
    .concat();
    assert_eq!(decode(Role::Server, &input), [text(""), Ev::Binary(vec![])]);
}

// ----- chunking -----

/// A server's input that exercises every path: lengths of every width, fragments with
/// control frames between them, characters split between fragments, and a close.
fn mixed_input(role: Role) -> (Vec<u8>, Vec<Ev>) {
    let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let frames = [
        from_peer(role, FIN | TEXT, "κόσμε".as_bytes()),
        from_peer(role, BINARY, &big[..200]),
        from_peer(role, FIN | PING, b"ping"),
        from_peer(role, FIN | CONT, &big[200..]),
        from_peer(role, TEXT, b"x\xf0\x9d"),
        from_peer(role, FIN | PONG, b""),
        from_peer(role, CONT, b"\x84"),
        from_peer(role, FIN | CONT, b"\x9e"),
        from_peer(role, FIN | TEXT, &[b'a'; 130]),
        from_peer(role, FIN | BINARY, b""),
        from_peer(role, FIN | CLOSE, &close_payload(1000, "done ✓".as_bytes())),
        // Dropped: after the close.
        from_peer(role, FIN | TEXT, b"late"),
    ];
    let expected = vec![
        text("κόσμε"),
        Ev::Ping(b"ping".to_vec()),
        Ev::Binary(big),
        Ev::Pong(vec![]),
        text("x𝄞"),
        text(&"a".repeat(130)),
        Ev::Binary(vec![]),
        Ev::Close(Some((1000, "done ✓".to_owned()))),
    ];
    (frames.concat(), expected)
}

#[test]
fn every_two_way_split_gives_the_same_events() {
    for role in [Role::Server, Role::Client] {
        let (input, expected) = mixed_input(role);
        assert_eq!(decode(role, &input), expected);
        for i in 0..=input.len() {
            let events = run(&mut Decoder::new(role), &[&input[..i], &input[i..]]);
            assert_eq!(events, expected, "{role:?} split at {i}");
        }
    }
}

#[test]
fn byte_by_byte_gives_the_same_events() {
    for role in [Role::Server, Role::Client] {
        let (input, expected) = mixed_input(role);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&mut Decoder::new(role), &bytes), expected, "{role:?}");
    }
}

/// Cuts `input` at the sorted, deduplicated `cuts` (taken modulo its length).
fn cut<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut chunks = Vec::new();
    let mut from = 0;
    for &to in at.iter().chain([&input.len()]) {
        chunks.push(&input[from..to]);
        from = to;
    }
    chunks
}

proptest! {
    #[test]
    fn random_chunkings_give_the_same_events(
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        client in any::<bool>(),
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let (input, expected) = mixed_input(role);
        let chunks = cut(&input, &cuts);
        prop_assert_eq!(run(&mut Decoder::new(role), &chunks), expected);
    }

    #[test]
    fn errors_do_not_depend_on_chunking(
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        // Invalid UTF-8 in the second fragment, after a valid first one.
        let input = [c(TEXT, b"ok \xce"), c(FIN | PING, b""), c(FIN | CONT, b"\xba\xff rest")].concat();
        let chunks = cut(&input, &cuts);
        prop_assert_eq!(
            run(&mut Decoder::new(Role::Server), &chunks),
            vec![Ev::Ping(vec![]), err(DecodeError::InvalidUtf8)]
        );
    }
}

// ----- protocol errors (1002) -----

#[test]
fn reserved_bits_without_an_extension_are_refused() {
    for rsv in [RSV1, RSV2, RSV3] {
        for opcode in [TEXT, BINARY, PING, CLOSE] {
            let e = decode_error(
                Role::Server,
                &c(FIN | rsv | opcode, b"x"),
                CloseCode::PROTOCOL_ERROR,
            );
            assert_eq!(e, DecodeError::ReservedBits(Rsv::from_first_byte(rsv)));
        }
    }
}

#[test]
fn reserved_opcodes_are_refused() {
    for opcode in (3..=7).chain(11..=15) {
        let e = decode_error(
            Role::Server,
            &c(FIN | opcode, b""),
            CloseCode::PROTOCOL_ERROR,
        );
        assert_eq!(e, DecodeError::UnknownOpcode(opcode));
    }
}

#[test]
fn a_long_control_frame_is_refused_from_its_header() {
    // Only the header: 126 as a 16-bit length, and the mask.
    let frame = c(FIN | PING, &[0; 126]);
    let header = &frame[..8];
    let e = decode_error(Role::Server, header, CloseCode::PROTOCOL_ERROR);
    assert_eq!(e, DecodeError::ControlFrameTooLong(126));
    // 125 is fine.
    assert_eq!(
        decode(Role::Server, &c(FIN | PING, &[7; 125])),
        [Ev::Ping(vec![7; 125])]
    );
}

#[test]
fn a_fragmented_control_frame_is_refused() {
    for opcode in [PING, PONG, CLOSE] {
        let e = decode_error(Role::Server, &c(opcode, b""), CloseCode::PROTOCOL_ERROR);
        assert_eq!(e, DecodeError::FragmentedControlFrame);
    }
}

#[test]
fn fragmentation_errors() {
    let e = decode_error(
        Role::Server,
        &c(FIN | CONT, b"x"),
        CloseCode::PROTOCOL_ERROR,
    );
    assert_eq!(e, DecodeError::UnexpectedContinuation);
    // After a finished message, a continuation is just as unexpected.
    let input = [c(TEXT, b"a"), c(FIN | CONT, b"b"), c(FIN | CONT, b"c")].concat();
    assert_eq!(
        decode(Role::Server, &input),
        [text("ab"), err(DecodeError::UnexpectedContinuation)]
    );
    for opcode in [TEXT, BINARY] {
        let input = [c(TEXT, b"a"), c(FIN | opcode, b"b")].concat();
        let e = decode_error(Role::Server, &input, CloseCode::PROTOCOL_ERROR);
        assert_eq!(e, DecodeError::ExpectedContinuation);
    }
}

#[test]
fn masking_rules_depend_on_the_role() {
    let e = decode_error(
        Role::Server,
        &s(FIN | TEXT, b"x"),
        CloseCode::PROTOCOL_ERROR,
    );
    assert_eq!(e, DecodeError::UnmaskedFrame);
    let e = decode_error(Role::Server, &s(FIN | PING, b""), CloseCode::PROTOCOL_ERROR);
    assert_eq!(e, DecodeError::UnmaskedFrame);
    let e = decode_error(
        Role::Client,
        &c(FIN | TEXT, b"x"),
        CloseCode::PROTOCOL_ERROR,
    );
    assert_eq!(e, DecodeError::MaskedFrame);
}

#[test]
fn header_errors_reach_the_decoder() {
    let e = decode_error(Role::Client, &[0x82, 126, 0, 5], CloseCode::PROTOCOL_ERROR);
    assert_eq!(e, DecodeError::NonMinimalLength);
    let e = decode_error(
        Role::Client,
        &[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
        CloseCode::PROTOCOL_ERROR,
    );
    assert_eq!(e, DecodeError::LengthOverflow);
}

#[test]
fn close_frame_rules() {
    let e = decode_error(
        Role::Server,
        &c(FIN | CLOSE, b"\x03"),
        CloseCode::PROTOCOL_ERROR,
    );
    assert_eq!(e, DecodeError::InvalidClosePayload);
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let input = c(FIN | CLOSE, &close_payload(code, b""));
        let e = decode_error(Role::Server, &input, CloseCode::PROTOCOL_ERROR);
        assert_eq!(e, DecodeError::InvalidCloseCode(code));
    }
    let input = c(FIN | CLOSE, &close_payload(1000, b"\xce\xba\xed\xa0\x80"));
    let e = decode_error(Role::Server, &input, CloseCode::INVALID_PAYLOAD);
    assert_eq!(e, DecodeError::InvalidUtf8);
    assert_eq!(
        decode(Role::Server, &c(FIN | CLOSE, b"")),
        [Ev::Close(None)]
    );
}

#[test]
fn input_after_a_close_is_dropped() {
    let mut decoder = Decoder::new(Role::Server);
    let input = [c(FIN | CLOSE, b""), c(FIN | TEXT, b"late"), vec![0xFF; 10]].concat();
    assert_eq!(
        run(&mut decoder, &[&input, b"more garbage"]),
        [Ev::Close(None)]
    );
    assert!(decoder.is_closed());
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn errors_are_sticky() {
    let mut decoder = Decoder::new(Role::Server);
    let input = [s(FIN | TEXT, b"x"), c(FIN | TEXT, b"fine")].concat();
    assert_eq!(
        run(&mut decoder, &[&input]),
        [err(DecodeError::UnmaskedFrame)]
    );
    let again = run(&mut decoder, &[&c(FIN | TEXT, b"fine")]);
    assert_eq!(again, [err(DecodeError::UnmaskedFrame)]);
    assert_eq!(decoder.error(), Some(DecodeError::UnmaskedFrame));
    assert_eq!(decoder.buffered_bytes(), 0);
}

// ----- invalid UTF-8 (1007) -----

#[test]
fn invalid_utf8_in_a_single_frame() {
    for role in [Role::Server, Role::Client] {
        let input = from_peer(
            role,
            FIN | TEXT,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        );
        let e = decode_error(role, &input, CloseCode::INVALID_PAYLOAD);
        assert_eq!(e, DecodeError::InvalidUtf8);
    }
}

#[test]
fn invalid_utf8_fails_fast_in_the_first_fragment() {
    for role in [Role::Server, Role::Client] {
        // Only the first fragment is sent: the rest would come later (Autobahn 6.4.x).
        let first = from_peer(
            role,
            TEXT,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
        );
        let e = decode_error(role, &first, CloseCode::INVALID_PAYLOAD);
        assert_eq!(e, DecodeError::InvalidUtf8);
    }
}

#[test]
fn invalid_utf8_fails_fast_inside_a_frame() {
    for role in [Role::Server, Role::Client] {
        // A 100-byte text frame; only its first 20 bytes arrive, and the invalid byte
        // is among them.
        let mut payload = b"valid text, then \xff".to_vec();
        payload.resize(100, b'a');
        let frame = from_peer(role, FIN | TEXT, &payload);
        let header = frame.len() - 100;
        let events = decode(role, &frame[..header + 20]);
        assert_eq!(events, [err(DecodeError::InvalidUtf8)], "{role:?}");
        // And a prefix that can begin no character is refused before it could end.
        let frame = from_peer(
            role,
            FIN | TEXT,
            &[b"ab\xf4\x90".as_slice(), &[0x80; 50]].concat(),
        );
        let events = decode(role, &frame[..frame.len() - 50]);
        assert_eq!(events, [err(DecodeError::InvalidUtf8)], "{role:?}");
    }
}

#[test]
fn a_character_cut_by_the_end_of_the_message_is_invalid() {
    let input = [c(TEXT, b"ok"), c(FIN | CONT, b"\xe2\x82")].concat();
    let e = decode_error(Role::Server, &input, CloseCode::INVALID_PAYLOAD);
    assert_eq!(e, DecodeError::InvalidUtf8);
    // Unfinished, not yet ended: no error.
    let input = [c(TEXT, b"ok"), c(CONT, b"\xe2\x82")].concat();
    assert_eq!(decode(Role::Server, &input), []);
}

#[test]
fn binary_is_not_validated() {
    assert_eq!(
        decode(Role::Server, &c(FIN | BINARY, b"\xff\xfe")),
        [Ev::Binary(vec![0xFF, 0xFE])]
    );
}

// ----- limits (1009) -----

#[test]
fn an_oversized_frame_is_refused_from_its_header() {
    for role in [Role::Server, Role::Client] {
        let mut decoder = Decoder::new(role);
        decoder.set_max_frame_bytes(1000);
        let frame = from_peer(role, FIN | BINARY, &[0; 1001]);
        let header_len = frame.len() - 1001;
        let events = run(&mut decoder, &[&frame[..header_len]]);
        assert_eq!(events, [err(DecodeError::FrameTooLarge(1001))]);
        assert_eq!(events[0], err(DecodeError::FrameTooLarge(1001)));
        assert_eq!(
            DecodeError::FrameTooLarge(1001).close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
        // The largest frame allowed passes.
        let mut decoder = Decoder::new(role);
        decoder.set_max_frame_bytes(1000);
        let frame = from_peer(role, FIN | BINARY, &[0; 1000]);
        assert_eq!(run(&mut decoder, &[&frame]), [Ev::Binary(vec![0; 1000])]);
    }
}

#[test]
fn a_huge_declared_length_is_refused_without_buffering() {
    // 2^62 bytes declared: refused at the header, nothing allocated for it.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&KEY);
    let e = decode_error(Role::Server, &header, CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(e, DecodeError::FrameTooLarge(1 << 62));
}

#[test]
fn an_oversized_message_is_refused_at_the_header_of_the_frame_that_passes_the_limit() {
    for (opcode, payload) in [(TEXT, b'a'), (BINARY, 0u8)] {
        let mut decoder = Decoder::new(Role::Server);
        decoder.set_max_message_bytes(1000);
        let first = c(opcode, &[payload; 600]);
        let ping = c(FIN | PING, &[1; 100]);
        let second = c(FIN | CONT, &[payload; 401]);
        let second_header = &second[..second.len() - 401];
        let events = run(&mut decoder, &[&first, &ping, second_header]);
        assert_eq!(
            events,
            [Ev::Ping(vec![1; 100]), err(DecodeError::MessageTooLarge)]
        );
        assert!(
            decoder.buffered_bytes() <= 600 + 14,
            "{}",
            decoder.buffered_bytes()
        );
        // Exactly the limit is accepted, and the next message starts from zero.
        let mut decoder = Decoder::new(Role::Server);
        decoder.set_max_message_bytes(1000);
        let input = [c(opcode, &[payload; 600]), c(FIN | CONT, &[payload; 400])].concat();
        assert_eq!(run(&mut decoder, &[&input, &input]).len(), 2);
    }
}

// ----- reading pauses, copies -----

#[test]
fn a_feed_dropped_early_keeps_the_rest_for_the_next_one() {
    let input = [
        c(FIN | TEXT, b"one"),
        c(FIN | TEXT, b"two"),
        c(TEXT, b"thr"),
    ]
    .concat();
    let mut decoder = Decoder::new(Role::Server);
    {
        let mut feed = decoder.feed(&input);
        assert_eq!(feed.next_event().unwrap(), Some(Event::Text("one")));
    }
    // The second frame and the start of the third are kept.
    assert_eq!(
        decoder.buffered_bytes(),
        input.len() - c(FIN | TEXT, b"one").len()
    );
    let rest = c(FIN | CONT, b"ee");
    let events = run(&mut decoder, &[b"", &rest]);
    assert_eq!(events, [text("two"), text("three")]);
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn a_client_gets_a_whole_frame_as_a_slice_of_the_chunk() {
    let input = [s(FIN | BINARY, &[9; 1000]), s(FIN | TEXT, b"hi")].concat();
    let mut decoder = Decoder::new(Role::Client);
    let mut feed = decoder.feed(&input);
    let in_chunk = |data: &[u8]| input.as_ptr_range().contains(&data.as_ptr());
    let Some(Event::Binary(data)) = feed.next_event().unwrap() else {
        panic!()
    };
    assert!(in_chunk(data));
    let Some(Event::Text(t)) = feed.next_event().unwrap() else {
        panic!()
    };
    assert_eq!(t, "hi");
    assert!(in_chunk(t.as_bytes()));
}

// ----- the extension seam -----

/// A toy extension claiming RSV1: doubles every byte. Counts its calls.
#[derive(Default)]
struct Doubler {
    finished: usize,
}

impl Extension for Doubler {
    fn rsv_bits(&self) -> Rsv {
        Rsv::RSV1
    }

    fn decode(
        &mut self,
        rsv: Rsv,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        assert_eq!(rsv, Rsv::RSV1);
        if input.len() * 2 > limit {
            return Err(DecodeError::MessageTooLarge);
        }
        for &b in input {
            out.extend_from_slice(&[b, b]);
        }
        Ok(())
    }

    fn finish_message(
        &mut self,
        _: Rsv,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DecodeError> {
        self.finished += 1;
        // A trailer byte, as an inflater's flush may produce output.
        if limit == 0 {
            return Err(DecodeError::MessageTooLarge);
        }
        out.push(b'!');
        Ok(())
    }
}

#[test]
fn rsv1_messages_go_through_the_extension_in_pieces() {
    for role in [Role::Server, Role::Client] {
        let input = [
            from_peer(role, RSV1 | TEXT, b"ab"),
            from_peer(role, FIN | PING, b""),
            from_peer(role, FIN | CONT, b"cd"),
            from_peer(role, FIN | RSV1 | BINARY, &[1, 2]),
            // No RSV1: not the extension's.
            from_peer(role, FIN | TEXT, b"plain"),
        ]
        .concat();
        let expected = [
            Ev::Ping(vec![]),
            text("aabbccdd!"),
            Ev::Binary(vec![1, 1, 2, 2, b'!']),
            text("plain"),
        ];
        for chunk_len in [1, 2, 3, input.len()] {
            let mut decoder = Decoder::with_extension(role, Doubler::default());
            let chunks: Vec<&[u8]> = input.chunks(chunk_len).collect();
            assert_eq!(run(&mut decoder, &chunks), expected, "{role:?} {chunk_len}");
            assert_eq!(decoder.extension().finished, 2);
        }
    }
}

#[test]
fn the_extension_output_is_validated_as_utf8() {
    // "é" is C3 A9: doubled, C3 C3 A9 A9 is invalid, and is refused in the first piece.
    let mut decoder = Decoder::with_extension(Role::Server, Doubler::default());
    let events = run(&mut decoder, &[&c(RSV1 | TEXT, "é".as_bytes())]);
    assert_eq!(events, [err(DecodeError::InvalidUtf8)]);
}

#[test]
fn the_extension_is_held_to_the_message_limit() {
    let mut decoder = Decoder::with_extension(Role::Server, Doubler::default());
    decoder.set_max_message_bytes(10);
    // 4 bytes in, 8 out: fine; 2 more in, 4 more out: past 10.
    let input = [c(RSV1 | BINARY, &[0; 4]), c(FIN | CONT, &[0; 2])].concat();
    assert_eq!(
        run(&mut decoder, &[&input]),
        [err(DecodeError::MessageTooLarge)]
    );
    // 4 in, 8 out, then the trailer: 9.
    let mut decoder = Decoder::with_extension(Role::Server, Doubler::default());
    decoder.set_max_message_bytes(9);
    let events = run(&mut decoder, &[&c(FIN | RSV1 | TEXT, b"abcd")]);
    assert_eq!(events, [text("aabbccdd!")]);
}

#[test]
fn reserved_bits_the_extension_does_not_allow_are_refused() {
    let cases = [
        // RSV1 on a continuation frame (RFC 7692: first frame only).
        [c(RSV1 | TEXT, b"a"), c(FIN | RSV1 | CONT, b"b")].concat(),
        // On a control frame.
        c(FIN | RSV1 | PING, b""),
        // A bit the extension does not claim.
        c(FIN | RSV2 | TEXT, b"a"),
    ];
    for input in cases {
        let mut decoder = Decoder::with_extension(Role::Server, Some(Doubler::default()));
        let events = run(&mut decoder, &[&input]);
        let Some(Ev::Error(DecodeError::ReservedBits(_))) = events.last() else {
            panic!("{events:?}");
        };
    }
    // `None` claims nothing.
    let mut decoder = Decoder::with_extension(Role::Server, None::<Doubler>);
    let events = run(&mut decoder, &[&c(FIN | RSV1 | TEXT, b"a")]);
    assert_eq!(events, [err(DecodeError::ReservedBits(Rsv::RSV1))]);
}

// ----- encoder to decoder -----

/// Encodes `messages` (and a ping and a close) on `role`'s side and decodes them on
/// the other.
fn round_trip(sender: Role, messages: &[Message], chunk_len: usize) -> Vec<Ev> {
    let mut encoder = Encoder::new(sender);
    let mut wire = Vec::new();
    for message in messages {
        encoder.message(&mut wire, message);
    }
    let receiver = match sender {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut decoder = Decoder::new(receiver);
    let chunks: Vec<&[u8]> = wire.chunks(chunk_len.max(1)).collect();
    run(&mut decoder, &chunks)
}

fn as_events(messages: &[Message]) -> Vec<Ev> {
    messages
        .iter()
        .map(|m| match m {
            Message::Text(t) => Ev::Text(t.clone()),
            Message::Binary(b) => Ev::Binary(b.clone()),
        })
        .collect()
}

#[test]
fn round_trip_at_every_length_boundary() {
    for sender in [Role::Server, Role::Client] {
        let messages: Vec<Message> = [0, 1, 125, 126, 0xFFFF, 0x1_0000, 100_003]
            .into_iter()
            .flat_map(|len| {
                let data: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
                [Message::Text("é".repeat(len / 2)), Message::Binary(data)]
            })
            .collect();
        assert_eq!(round_trip(sender, &messages, 60_000), as_events(&messages));
    }
}

#[test]
fn round_trip_of_fragments_and_control_frames() {
    for sender in [Role::Server, Role::Client] {
        let mut e = Encoder::new(sender);
        let mut wire = Vec::new();
        let euro = "€".as_bytes();
        e.start_fragmented(&mut wire, MessageKind::Text, &euro[..1]);
        e.ping(&mut wire, b"p").unwrap();
        e.continue_fragmented(&mut wire, &euro[1..], false);
        e.pong(&mut wire, b"").unwrap();
        e.continue_fragmented(&mut wire, b"!", true);
        e.start_fragmented(&mut wire, MessageKind::Binary, &[1]);
        e.continue_fragmented(&mut wire, &[2], true);
        e.frame(&mut wire, true, Rsv::NONE, OpCode::Text, b"raw")
            .unwrap();
        e.close_empty(&mut wire);
        let receiver = if sender == Role::Server {
            Role::Client
        } else {
            Role::Server
        };
        assert_eq!(
            decode(receiver, &wire),
            [
                Ev::Ping(b"p".to_vec()),
                Ev::Pong(vec![]),
                text("€!"),
                Ev::Binary(vec![1, 2]),
                text("raw"),
                Ev::Close(None),
            ]
        );
    }
}

#[test]
fn a_vectored_header_and_payload_decode_as_one_frame() {
    for sender in [Role::Server, Role::Client] {
        let mut e = Encoder::new(sender);
        let payload = vec![5u8; 70_000];
        let header = e.header(true, Rsv::NONE, OpCode::Binary, payload.len() as u64);
        let mut body = payload.clone();
        if let Some(key) = header.mask() {
            apply_mask(&mut body, key);
        }
        let receiver = if sender == Role::Server {
            Role::Client
        } else {
            Role::Server
        };
        let mut decoder = Decoder::new(receiver);
        let events = run(&mut decoder, &[header.as_bytes(), &body]);
        assert_eq!(events, [Ev::Binary(payload)]);
    }
}

proptest! {
    #[test]
    fn random_messages_round_trip(
        texts in proptest::collection::vec(".{0,200}", 0..6),
        blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
        chunk_len in 1usize..500,
        client in any::<bool>(),
    ) {
        let sender = if client { Role::Client } else { Role::Server };
        let mut messages: Vec<Message> = texts.into_iter().map(Message::Text).collect();
        messages.extend(blobs.into_iter().map(Message::Binary));
        prop_assert_eq!(round_trip(sender, &messages, chunk_len), as_events(&messages));
    }
}

#[test]
fn event_to_message() {
    assert_eq!(
        Event::Text("a").to_message(),
        Some(Message::Text("a".to_owned()))
    );
    assert_eq!(
        Event::Binary(&[1]).to_message().map(|m| m.kind()),
        Some(MessageKind::Binary)
    );
    assert_eq!(Event::Ping(b"").to_message(), None);
    assert_eq!(Message::Text("é".to_owned()).as_bytes(), "é".as_bytes());
}
