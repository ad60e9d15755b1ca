//! `NetstringParser` driven with a fuzzer-chosen limit, chunking and handler actions
//! (limit changes, pauses, closes).
//!
//! Checked, for every input:
//! - every event matches a reference model (one buffer, `buffer += data`, the whole
//!   netstring grammar re-checked from the buffer's start each time: no leading zero,
//!   only digits then `:`, a length over the limit refused at the digit that passes
//!   it, a `,` after the payload), chunk by chunk;
//! - a payload is at most the current `max_length` long;
//! - after an error no event comes, the parser says it is broken and buffers nothing;
//! - once a chunk is parsed (not paused), at most `max_length` bytes are buffered (a
//!   payload and its comma, not yet complete; length digits are never buffered);
//! - the events concatenated back into netstrings are a prefix of the input;
//! - the same events come out with the whole input in one chunk.

use twistor::framing::{NetstringError, NetstringEvent, NetstringParser};

use super::fuzz_input::{cut, Input};
use super::string_script::{read_actions, Action, Flow, Script};

const MAX_PAYLOAD: usize = 1 << 16;

const LIMITS: [usize; 12] = [0, 1, 2, 3, 5, 9, 10, 40, 99, 99_999, 1 << 20, usize::MAX];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    String(Vec<u8>),
    Error(NetstringError),
}

/// The next netstring at the start of `buf`: `None` if incomplete, else the event and
/// the bytes it took.
fn model_next(buf: &[u8], max: usize) -> Option<(Seen, usize)> {
    let mut value: usize = 0;
    for (i, &byte) in buf.iter().enumerate() {
        match byte {
            b'0'..=b'9' if i > 0 && value == 0 => {
                return Some((Seen::Error(NetstringError::MissingLength), 0))
            }
            b'0'..=b'9' => {
                match value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(usize::from(byte - b'0')))
                {
                    Some(v) if v <= max => value = v,
                    _ => {
                        return Some((Seen::Error(NetstringError::TooLong { max_length: max }), 0))
                    }
                }
            }
            b':' if i > 0 => {
                let payload = &buf[i + 1..];
                if payload.len() <= value {
                    return None;
                }
                if payload[value] != b',' {
                    return Some((Seen::Error(NetstringError::MissingComma), 0));
                }
                return Some((Seen::String(payload[..value].to_vec()), i + 1 + value + 1));
            }
            _ => return Some((Seen::Error(NetstringError::MissingLength), 0)),
        }
    }
    None
}

struct Model {
    buffer: Vec<u8>,
    max: usize,
    broken: bool,
    paused: bool,
    closed: bool,
}

impl Model {
    fn data(&mut self, chunk: &[u8], script: &mut Script<'_>, seen: &mut Vec<Seen>) {
        if self.closed || self.broken {
            return;
        }
        self.buffer.extend_from_slice(chunk);
        while !self.paused && !self.closed && !self.broken {
            let Some((event, taken)) = model_next(&self.buffer, self.max) else {
                break;
            };
            if let Seen::Error(_) = event {
                self.broken = true;
                self.buffer.clear();
            }
            self.buffer.drain(..taken);
            seen.push(event);
            match script.act(&mut self.max) {
                Flow::Go => {}
                Flow::Pause => self.paused = true,
                Flow::Close => self.closed = true,
            }
        }
        if self.closed {
            self.buffer.clear();
        }
    }
}

struct Real {
    parser: NetstringParser,
    paused: bool,
    closed: bool,
}

impl Real {
    fn data(&mut self, chunk: &[u8], script: &mut Script<'_>, seen: &mut Vec<Seen>) {
        if self.closed {
            return;
        }
        let was_broken = self.parser.is_broken();
        let mut feed = self.parser.feed(chunk);
        while !self.paused {
            let Some((event, mut ctl)) = feed.next_event() else {
                break;
            };
            assert!(!was_broken, "an event after an error");
            let max = ctl.max_length();
            let broken = matches!(event, NetstringEvent::Error(_));
            seen.push(match event {
                NetstringEvent::String(s) => {
                    assert!(s.len() <= max, "a netstring of {} over {max}", s.len());
                    Seen::String(s.to_vec())
                }
                NetstringEvent::Error(e) => Seen::Error(e),
            });
            let mut new_max = max;
            let flow = script.act(&mut new_max);
            ctl.set_max_length(new_max);
            match flow {
                Flow::Go => {}
                Flow::Pause => self.paused = true,
                Flow::Close => {
                    self.closed = true;
                    feed.discard();
                    return;
                }
            }
            if broken {
                assert!(feed.next_event().is_none(), "an event after an error");
                break;
            }
        }
        drop(feed);
        if self.parser.is_broken() {
            assert_eq!(
                pending_bytes(&self.parser),
                0,
                "bytes buffered after an error"
            );
        }
    }
}

/// How many bytes the parser buffers. `NetstringParser` has no `buffered()`, but its
/// `Debug` output reports its buffer as `pending_bytes: N`; if that ever changes, this
/// panics rather than check nothing.
fn pending_bytes(parser: &NetstringParser) -> usize {
    let debug = format!("{parser:?}");
    let at = debug
        .find("pending_bytes: ")
        .expect("NetstringParser's Debug output no longer shows pending_bytes")
        + "pending_bytes: ".len();
    let digits: String = debug[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("pending_bytes is a number")
}

fn run(chunks: &[&[u8]], max: usize, actions: &[Action], with_model: bool) -> Vec<Seen> {
    let mut model = Model {
        buffer: Vec::new(),
        max,
        broken: false,
        paused: false,
        closed: false,
    };
    let mut real = Real {
        parser: NetstringParser::new(max),
        paused: false,
        closed: false,
    };
    let mut model_script = Script::new(actions);
    let mut real_script = Script::new(actions);
    let (mut model_seen, mut real_seen) = (Vec::new(), Vec::new());
    for chunk in chunks.iter().copied().chain([&[][..]]) {
        while real.paused {
            real.paused = false;
            real.data(&[], &mut real_script, &mut real_seen);
            if with_model {
                assert!(model.paused, "paused");
                model.paused = false;
                model.data(&[], &mut model_script, &mut model_seen);
                assert_eq!(real_seen, model_seen, "events after a resume");
            }
        }
        real.data(chunk, &mut real_script, &mut real_seen);
        if real.closed {
            break;
        }
        if with_model {
            model.data(chunk, &mut model_script, &mut model_seen);
            assert_eq!(real_seen, model_seen, "events");
            assert_eq!(real.closed, model.closed, "closed");
            assert_eq!(real.paused, model.paused, "paused");
            assert_eq!(real.parser.is_broken(), model.broken, "broken");
            if !real.paused && !model.broken {
                // The model keeps the length digits in its buffer; the parser keeps
                // only the payload (and its comma) as it arrives.
                let payload = match model.buffer.iter().position(|&b| b == b':') {
                    Some(colon) => model.buffer.len() - colon - 1,
                    None => 0,
                };
                let pending = pending_bytes(&real.parser);
                assert_eq!(pending, payload, "bytes buffered");
                assert!(
                    pending <= real.parser.max_length(),
                    "{pending} bytes buffered over max_length {}",
                    real.parser.max_length()
                );
            }
        }
    }
    real_seen
}

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let max = LIMITS[usize::from(input.byte()) % LIMITS.len()];
    let sizes = input.list(16);
    let actions = read_actions(&mut input, &LIMITS);
    let payload = input.rest(MAX_PAYLOAD);
    let chunks = cut(payload, sizes);
    let whole: Vec<&[u8]> = [payload].into_iter().filter(|c| !c.is_empty()).collect();
    let events = run(&chunks, max, &actions, true);
    assert_eq!(
        events,
        run(&whole, max, &actions, false),
        "events depend on the chunking"
    );
    // The strings, framed again, are the start of the input.
    let mut framed = Vec::new();
    for event in &events {
        if let Seen::String(s) = event {
            framed.extend_from_slice(format!("{}:", s.len()).as_bytes());
            framed.extend_from_slice(s);
            framed.push(b',');
        }
    }
    assert!(
        payload.starts_with(&framed),
        "the netstrings handed out are not the input's"
    );
}
