//! `IntNParser` (N = 1, 2, 4) driven with a fuzzer-chosen limit, chunking and handler
//! actions (limit changes, pauses, closes).
//!
//! Checked, for every input:
//! - every event matches a reference model (one buffer, `buffer += data`; a prefix
//!   over the limit is reported and its payload skipped), chunk by chunk, including
//!   what stays buffered;
//! - a string is at most the current `max_length` long; an overlong prefix is over it;
//! - once a chunk is parsed (not paused), the buffer holds less than a whole prefix, or
//!   a prefix within the limit and less than its payload;
//! - the same events come out with the whole input in one chunk.

use twistor::framing::{IntNParser, StringEvent};

use super::fuzz_input::{cut, Input};
use super::string_script::{read_actions, Action, Flow, Script};

const MAX_PAYLOAD: usize = 1 << 16;

const LIMITS: [usize; 12] = [0, 1, 2, 3, 5, 8, 40, 255, 256, 1000, 65_536, usize::MAX];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    String(Vec<u8>),
    TooLong(usize),
}

fn prefix(bytes: &[u8]) -> usize {
    bytes.iter().fold(0, |n, &b| n << 8 | usize::from(b))
}

struct Model<const N: usize> {
    buffer: Vec<u8>,
    skip: usize,
    max: usize,
    paused: bool,
    closed: bool,
}

impl<const N: usize> Model<N> {
    fn data(&mut self, chunk: &[u8], script: &mut Script<'_>, seen: &mut Vec<Seen>) {
        if self.closed {
            return;
        }
        self.buffer.extend_from_slice(chunk);
        while !self.paused && !self.closed {
            let skipped = self.skip.min(self.buffer.len());
            self.buffer.drain(..skipped);
            self.skip -= skipped;
            if self.skip > 0 || self.buffer.len() < N {
                break;
            }
            let length = prefix(&self.buffer[..N]);
            let event = if length > self.max {
                self.buffer.drain(..N);
                self.skip = length;
                Seen::TooLong(length)
            } else if self.buffer.len() - N >= length {
                let string = self.buffer[N..N + length].to_vec();
                self.buffer.drain(..N + length);
                Seen::String(string)
            } else {
                break;
            };
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

struct Real<const N: usize> {
    parser: IntNParser<N>,
    paused: bool,
    closed: bool,
}

impl<const N: usize> Real<N> {
    fn data(&mut self, chunk: &[u8], script: &mut Script<'_>, seen: &mut Vec<Seen>) {
        if self.closed {
            return;
        }
        let mut feed = self.parser.feed(chunk);
        while !self.paused {
            let Some((event, mut ctl)) = feed.next_event() else {
                break;
            };
            let max = ctl.max_length();
            seen.push(match event {
                StringEvent::String(s) => {
                    assert!(s.len() <= max, "a string of {} over {max}", s.len());
                    Seen::String(s.to_vec())
                }
                StringEvent::LengthLimitExceeded(n) => {
                    assert!(n > max, "length {n} refused with max_length {max}");
                    Seen::TooLong(n)
                }
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
        }
    }
}

/// Runs one input through `IntNParser<N>`, in the fuzzer's chunks and whole; returns
/// the events.
fn run<const N: usize>(
    chunks: &[&[u8]],
    max: usize,
    actions: &[Action],
    with_model: bool,
) -> Vec<Seen> {
    let mut model = Model::<N> {
        buffer: Vec::new(),
        skip: 0,
        max,
        paused: false,
        closed: false,
    };
    let mut real = Real::<N> {
        parser: IntNParser::new(max),
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
        if !real.paused {
            let buffered = real.parser.buffered();
            if buffered.len() >= N {
                let length = prefix(&buffered[..N]);
                assert!(
                    length <= real.parser.max_length(),
                    "an overlong prefix ({length}) left buffered"
                );
                assert!(buffered.len() < N + length, "a whole string left buffered");
            }
        }
        if with_model {
            model.data(chunk, &mut model_script, &mut model_seen);
            assert_eq!(real_seen, model_seen, "events");
            assert_eq!(real.parser.buffered(), &model.buffer[..], "buffered");
            assert_eq!(real.closed, model.closed, "closed");
            assert_eq!(real.paused, model.paused, "paused");
        }
    }
    real_seen
}

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let config = input.byte();
    let max = LIMITS[usize::from(config / 3) % LIMITS.len()];
    let sizes = input.list(16);
    let actions = read_actions(&mut input, &LIMITS);
    let payload = input.rest(MAX_PAYLOAD);
    let chunks = cut(payload, sizes);
    let whole: Vec<&[u8]> = [payload].into_iter().filter(|c| !c.is_empty()).collect();
    match config % 3 {
        0 => assert_eq!(
            run::<1>(&chunks, max, &actions, true),
            run::<1>(&whole, max, &actions, false)
        ),
        1 => assert_eq!(
            run::<2>(&chunks, max, &actions, true),
            run::<2>(&whole, max, &actions, false)
        ),
        _ => assert_eq!(
            run::<4>(&chunks, max, &actions, true),
            run::<4>(&whole, max, &actions, false)
        ),
    }
}
