//! Property tests for the framers' pure parsers: random inputs, random chunkings and
//! random handler actions (mode switches, hand-backs, clears, limit changes, pauses,
//! closes), against simple reference implementations written the way Twisted's
//! `basic.py` is: one buffer, `buffer += data`, split at the first delimiter.

use proptest::prelude::*;
use twistor::framing::{
    Int16Parser, Int8Parser, LineEvent, LineParser, NetstringEvent, NetstringParser, StringEvent,
};

// The line model (Action, Seen, Script, Model, Real) is the fuzz target's: one copy,
// shared through `#[path]`, so the property test and the fuzzer check the same thing.
#[allow(dead_code)]
#[path = "../fuzz/checks/fuzz_input.rs"]
mod fuzz_input;
#[allow(dead_code)]
#[path = "../fuzz/checks/line.rs"]
mod line_model;

use line_model::{Action, Model, Real, Script};

// ----- strategies -----

/// Bytes from a small alphabet, so that delimiters (and near misses) are common.
fn bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![b'a', b'b', b'\r', b'\n', b'x']),
        0..max_len,
    )
}

fn delimiter() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        b"\n".to_vec(),
        b"\r\n".to_vec(),
        b"ab".to_vec(),
        b"aba".to_vec(),
        b"\r\n\r\n".to_vec(),
    ])
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => Just(Action::Nothing),
        2 => Just(Action::RawMode),
        1 => Just(Action::LineMode),
        1 => bytes(12).prop_map(Action::LineModeExtra),
        2 => (0usize..6).prop_map(Action::LineModeTail),
        1 => Just(Action::Clear),
        1 => (0usize..12).prop_map(Action::SetMax),
        1 => Just(Action::Pause),
        1 => Just(Action::Close),
    ]
}

/// Cuts `input` at the given (unsorted, possibly repeated) points.
fn cut<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points {
        chunks.push(&input[start..p]);
        start = p;
    }
    chunks.push(&input[start..]);
    // The reactor never delivers an empty chunk; an empty feed is a resume.
    chunks.retain(|c| !c.is_empty());
    chunks
}

/// The body of `line_parser_matches_the_reference_model`, callable with fixed inputs.
fn check_against_model(
    input: &[u8],
    points: &[usize],
    delimiter: &[u8],
    max: usize,
    actions: &[Action],
) -> Result<(), TestCaseError> {
    let chunks = cut(input, points);
    let mut model = Model {
        buffer: Vec::new(),
        line_mode: true,
        max,
        delimiter: delimiter.to_vec(),
        paused: false,
        closed: false,
    };
    let mut real = Real {
        parser: LineParser::new(delimiter, max),
        paused: false,
        closed: false,
    };
    let (mut model_script, mut real_script) = (Script::new(actions), Script::new(actions));
    let (mut model_seen, mut real_seen) = (Vec::new(), Vec::new());
    // Resume (an empty feed) before each chunk and at the end, as the reactor's
    // reading_resumed does when the handler resumed reading.
    for chunk in chunks.iter().copied().chain([&[][..]]) {
        while model.paused || real.paused {
            prop_assert_eq!(model.paused, real.paused);
            model.paused = false;
            real.paused = false;
            model.data(&[], &mut model_script, &mut model_seen);
            real.data(&[], &mut real_script, &mut real_seen);
            prop_assert_eq!(&real_seen, &model_seen);
        }
        model.data(chunk, &mut model_script, &mut model_seen);
        real.data(chunk, &mut real_script, &mut real_seen);
        prop_assert_eq!(&real_seen, &model_seen, "chunks {:?}", chunks);
        prop_assert_eq!(real.closed, model.closed);
        prop_assert_eq!(real.parser.buffered(), &model.buffer[..]);
        prop_assert_eq!(real.parser.is_line_mode(), model.line_mode);
    }
    Ok(())
}

/// A case proptest found: a script that keeps handing lines back (pause, shrink the
/// limit, hand back three empty lines) until the event limit forces a close on an
/// event whose action was a pause. The model used to stay paused while the parser's
/// driver closed; the model now lets the close win, as the driver does.
#[test]
fn regression_pause_after_extra_handed_back_from_line_too_long() {
    let input = b"aa\naaaaaaaaaaaaaaaa\na";
    let actions = [
        Action::Pause,
        Action::SetMax(1),
        Action::LineModeExtra(b"\n\n\n".to_vec()),
    ];
    check_against_model(input, &[35], b"\n", 2, &actions).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The parser, driven with random actions, does exactly what the reference model
    /// does, chunk by chunk, including what stays buffered.
    #[test]
    fn line_parser_matches_the_reference_model(
        input in bytes(80),
        points in prop::collection::vec(0usize..100, 0..8),
        delimiter in delimiter(),
        max in 0usize..12,
        actions in prop::collection::vec(action(), 1..12),
    ) {
        check_against_model(&input, &points, &delimiter, max, &actions)?;
    }

    /// Plain lines are the same at every chunking, up to and including the first
    /// overlong line (whose argument depends on the chunking, as in Twisted).
    #[test]
    fn lines_do_not_depend_on_chunking(
        input in bytes(200),
        points in prop::collection::vec(0usize..300, 0..20),
        delimiter in delimiter(),
        max in 0usize..20,
    ) {
        let run = |chunks: &[&[u8]]| {
            let mut parser = LineParser::new(&delimiter, max);
            let mut seen = Vec::new();
            for chunk in chunks {
                let mut feed = parser.feed(chunk);
                while let Some((event, _)) = feed.next_event() {
                    match event {
                        LineEvent::Line(l) => seen.push(Some(l.to_vec())),
                        // The default handler closes here.
                        _ => {
                            seen.push(None);
                            return (seen, Vec::new());
                        }
                    }
                }
            }
            (seen, parser.buffered().to_vec())
        };
        let whole = run(&[&input]);
        prop_assert_eq!(run(&cut(&input, &points)), whole.clone());
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(run(&bytes), whole);
    }

    /// Length-prefixed strings, with skipped overlong ones, at any chunking.
    #[test]
    fn int_n_strings_at_any_chunking(
        strings in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..10),
        points in prop::collection::vec(0usize..500, 0..12),
        max in 0usize..40,
    ) {
        fn decode(chunks: &[&[u8]], max: usize, prefix: usize) -> Vec<Result<Vec<u8>, usize>> {
            let mut out = Vec::new();
            match prefix {
                1 => {
                    let mut p = Int8Parser::new(max);
                    for c in chunks {
                        let mut feed = p.feed(c);
                        while let Some((e, _)) = feed.next_event() {
                            out.push(match e {
                                StringEvent::String(s) => Ok(s.to_vec()),
                                StringEvent::LengthLimitExceeded(n) => Err(n),
                            });
                        }
                    }
                }
                _ => {
                    let mut p = Int16Parser::new(max);
                    for c in chunks {
                        let mut feed = p.feed(c);
                        while let Some((e, _)) = feed.next_event() {
                            out.push(match e {
                                StringEvent::String(s) => Ok(s.to_vec()),
                                StringEvent::LengthLimitExceeded(n) => Err(n),
                            });
                        }
                    }
                }
            }
            out
        }
        for prefix in [1usize, 2] {
            let mut input = Vec::new();
            for s in &strings {
                input.extend_from_slice(&(s.len() as u64).to_be_bytes()[8 - prefix..]);
                input.extend_from_slice(s);
            }
            // The reference: each string, or its length if over the limit.
            let expected: Vec<Result<Vec<u8>, usize>> = strings
                .iter()
                .map(|s| if s.len() > max { Err(s.len()) } else { Ok(s.clone()) })
                .collect();
            prop_assert_eq!(&decode(&cut(&input, &points), max, prefix), &expected);
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            prop_assert_eq!(&decode(&bytes, max, prefix), &expected);
        }
    }

    /// Netstrings, valid or not, give the same events at any chunking.
    #[test]
    fn netstrings_at_any_chunking(
        pieces in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..20).prop_map(|s| {
                    [format!("{}:", s.len()).into_bytes(), s, b",".to_vec()].concat()
                }),
                prop::collection::vec(
                    prop::sample::select(vec![b'0', b'1', b'9', b':', b',', b'a', b' ']),
                    0..6,
                ),
            ],
            0..6,
        ),
        points in prop::collection::vec(0usize..200, 0..12),
        max in 0usize..30,
    ) {
        let input = pieces.concat();
        let run = |chunks: &[&[u8]]| {
            let mut p = NetstringParser::new(max);
            let mut out = Vec::new();
            for c in chunks {
                let mut feed = p.feed(c);
                while let Some((e, _)) = feed.next_event() {
                    out.push(match e {
                        NetstringEvent::String(s) => Ok(s.to_vec()),
                        NetstringEvent::Error(e) => Err(e),
                    });
                }
            }
            out
        };
        let whole = run(&[&input]);
        prop_assert_eq!(run(&cut(&input, &points)), whole.clone());
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(run(&bytes), whole);
    }
}
