//! `LineParser` driven with a fuzzer-chosen delimiter, limit, chunking and handler
//! actions (mode switches, hand-backs, clears, limit changes, pauses, closes).
//!
//! Checked, for every input:
//! - every event matches a reference model written the way Twisted's `basic.py` is
//!   (one buffer, `buffer += data`, split at the first delimiter), chunk by chunk,
//!   including what stays buffered, the mode and whether the connection closed;
//! - a line is at most the current `max_length` long and holds no delimiter; raw data
//!   and overlong data are never empty;
//! - once a chunk is parsed (not paused): in line mode the buffer holds no delimiter
//!   and is shorter than `max_length + delimiter`; in raw mode it is empty;
//! - every byte is accounted for: what went in (chunks, bytes handed back) equals what
//!   came out (lines and their delimiters, raw data, overlong data, cleared bytes) plus
//!   what is still buffered;
//! - with a plain handler, the lines do not depend on the chunking (whole input, the
//!   fuzzer's chunks, and byte by byte), up to the first overlong line.

use twistor::framing::{LineControl, LineEvent, LineParser};

use super::fuzz_input::{cut, find, Input};

/// Events per run before the scripted handler closes the connection, so that a script
/// that keeps handing back an overlong line cannot loop for ever.
const MAX_EVENTS: usize = 400;

/// Longest payload looked at: the model is quadratic.
const MAX_PAYLOAD: usize = 4096;

const DELIMITERS: [&[u8]; 7] = [b"\r\n", b"\n", b"ab", b"aba", b"\r\n\r\n", b"aa", b"\0"];

/// What the scripted handler does after an event. Shared with the property test
/// `tests/framing_props.rs`, which includes this file.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    Nothing,
    RawMode,
    LineMode,
    /// `set_line_mode(extra)` with fresh bytes.
    LineModeExtra(Vec<u8>),
    /// In raw mode: `set_line_mode(&data[n..])`, a tail of the raw slice itself.
    LineModeTail(usize),
    Clear,
    SetMax(usize),
    Pause,
    Close,
}

fn action(input: &mut Input<'_>) -> Action {
    match input.byte() % 16 {
        0..=5 => Action::Nothing,
        6 | 7 => Action::RawMode,
        8 => Action::LineMode,
        9 => Action::LineModeExtra(input.list(12).to_vec()),
        10 | 11 => Action::LineModeTail(usize::from(input.byte() % 8)),
        12 => Action::Clear,
        13 => Action::SetMax(usize::from(input.byte() % 24)),
        14 => Action::Pause,
        _ => Action::Close,
    }
}

/// Everything observable: the events, and what `clear_line_buffer` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    Line(Vec<u8>),
    Raw(Vec<u8>),
    TooLong(Vec<u8>),
    Cleared(Vec<u8>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    Pause,
    Close,
}

/// The scripted handler: the same for the parser and the model.
pub(crate) struct Script<'a> {
    actions: &'a [Action],
    n: usize,
    /// Bytes handed back with `set_line_mode`, for the accounting.
    handed_back: usize,
}

impl<'a> Script<'a> {
    pub(crate) fn new(actions: &'a [Action]) -> Self {
        Script {
            actions,
            n: 0,
            handed_back: 0,
        }
    }

    fn next(&mut self) -> (Action, bool) {
        let action = self.actions[self.n % self.actions.len()].clone();
        self.n += 1;
        (action, self.n >= MAX_EVENTS)
    }
}

/// The reference model of `LineReceiver`, written the way Twisted's `basic.py` is.
pub(crate) struct Model {
    pub(crate) buffer: Vec<u8>,
    pub(crate) line_mode: bool,
    pub(crate) max: usize,
    pub(crate) delimiter: Vec<u8>,
    pub(crate) paused: bool,
    pub(crate) closed: bool,
}

impl Model {
    pub(crate) fn data(&mut self, chunk: &[u8], script: &mut Script<'_>, seen: &mut Vec<Seen>) {
        if self.closed {
            return;
        }
        self.buffer.extend_from_slice(chunk);
        while !self.buffer.is_empty() && !self.paused && !self.closed {
            let d = self.delimiter.len();
            let event = if self.line_mode {
                match find(&self.buffer, &self.delimiter) {
                    None if self.buffer.len() >= self.max + d => {
                        Seen::TooLong(std::mem::take(&mut self.buffer))
                    }
                    None => break,
                    Some(i) if i > self.max => Seen::TooLong(std::mem::take(&mut self.buffer)),
                    Some(i) => {
                        let line = self.buffer[..i].to_vec();
                        self.buffer.drain(..i + d);
                        Seen::Line(line)
                    }
                }
            } else {
                Seen::Raw(std::mem::take(&mut self.buffer))
            };
            seen.push(event.clone());
            let (action, last) = script.next();
            match action {
                Action::Nothing => {}
                Action::RawMode => self.line_mode = false,
                Action::LineMode => self.line_mode = true,
                Action::LineModeExtra(extra) => {
                    self.line_mode = true;
                    self.buffer.extend_from_slice(&extra);
                }
                Action::LineModeTail(n) => {
                    self.line_mode = true;
                    if let Seen::Raw(data) = &event {
                        self.buffer.extend_from_slice(&data[n.min(data.len())..]);
                    }
                }
                Action::Clear => seen.push(Seen::Cleared(std::mem::take(&mut self.buffer))),
                Action::SetMax(n) => self.max = n,
                Action::Pause => self.paused = true,
                Action::Close => self.closed = true,
            }
            if last {
                // As in `act`: the forced close overrides whatever the action was (a
                // pause included), so that the two sides agree on `paused`.
                self.closed = true;
                self.paused = false;
            }
        }
        if self.closed {
            self.buffer.clear();
        }
    }
}

/// The parser under test, driven the way the `LineReceiver` adapter drives it.
pub(crate) struct Real {
    pub(crate) parser: LineParser,
    pub(crate) paused: bool,
    pub(crate) closed: bool,
}

impl Real {
    pub(crate) fn data(&mut self, chunk: &[u8], script: &mut Script<'_>, seen: &mut Vec<Seen>) {
        if self.closed {
            return;
        }
        let delimiter = self.parser.delimiter().to_vec();
        let mut feed = self.parser.feed(chunk);
        while !self.paused {
            let Some((event, mut ctl)) = feed.next_event() else {
                break;
            };
            match event {
                LineEvent::Line(line) => {
                    assert!(
                        line.len() <= ctl.max_length(),
                        "a line of {} bytes passed max_length {}",
                        line.len(),
                        ctl.max_length()
                    );
                    assert!(find(line, &delimiter).is_none(), "a line holds a delimiter");
                }
                LineEvent::Raw(data) => assert!(!data.is_empty(), "empty raw data"),
                LineEvent::LineTooLong(data) => assert!(!data.is_empty(), "empty overlong data"),
            }
            match act(event, &mut ctl, script, seen) {
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

fn act(
    event: LineEvent<'_>,
    ctl: &mut LineControl<'_>,
    script: &mut Script<'_>,
    seen: &mut Vec<Seen>,
) -> Flow {
    seen.push(match event {
        LineEvent::Line(l) => Seen::Line(l.to_vec()),
        LineEvent::Raw(d) => Seen::Raw(d.to_vec()),
        LineEvent::LineTooLong(d) => Seen::TooLong(d.to_vec()),
    });
    let (action, last) = script.next();
    let mut flow = Flow::Go;
    match action {
        Action::Nothing => {}
        Action::RawMode => ctl.set_raw_mode(),
        Action::LineMode => ctl.set_line_mode(b""),
        Action::LineModeExtra(extra) => {
            script.handed_back += extra.len();
            ctl.set_line_mode(&extra);
        }
        Action::LineModeTail(n) => match event {
            LineEvent::Raw(data) => {
                let tail = &data[n.min(data.len())..];
                script.handed_back += tail.len();
                ctl.set_line_mode(tail);
            }
            _ => ctl.set_line_mode(b""),
        },
        Action::Clear => seen.push(Seen::Cleared(ctl.clear_line_buffer())),
        Action::SetMax(n) => ctl.set_max_length(n),
        Action::Pause => flow = Flow::Pause,
        Action::Close => flow = Flow::Close,
    }
    if last {
        flow = Flow::Close;
    }
    flow
}

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let d = input.byte();
    let delimiter: Vec<u8> = if d < 224 {
        DELIMITERS[usize::from(d) % DELIMITERS.len()].to_vec()
    } else {
        // An arbitrary delimiter of 1 to 4 bytes.
        let n = usize::from(d % 4) + 1;
        let mut bytes = input.bytes(n).to_vec();
        bytes.resize(n, b'a');
        bytes
    };
    let max = match input.byte() {
        m @ 0..=239 => usize::from(m % 40),
        m => usize::from(m - 239) * 1000,
    };
    let sizes = input.list(16);
    let mut actions: Vec<Action> = (0..usize::from(input.byte() % 12))
        .map(|_| action(&mut input))
        .collect();
    if actions.is_empty() {
        actions.push(Action::Nothing);
    }
    let payload = input.rest(MAX_PAYLOAD);
    let chunks = cut(payload, sizes);

    let mut model = Model {
        buffer: Vec::new(),
        line_mode: true,
        max,
        delimiter: delimiter.clone(),
        paused: false,
        closed: false,
    };
    let mut real = Real {
        parser: LineParser::new(&delimiter, max),
        paused: false,
        closed: false,
    };
    let new_script = || Script::new(&actions);
    let (mut model_script, mut real_script) = (new_script(), new_script());
    let (mut model_seen, mut real_seen) = (Vec::new(), Vec::new());
    let mut fed = 0;
    // Resume (an empty feed) before each chunk and at the end, as `reading_resumed`
    // does once the handler resumes reading.
    for chunk in chunks.iter().copied().chain([&[][..]]) {
        while model.paused || real.paused {
            assert_eq!(model.paused, real.paused, "paused");
            model.paused = false;
            real.paused = false;
            model.data(&[], &mut model_script, &mut model_seen);
            real.data(&[], &mut real_script, &mut real_seen);
            assert_eq!(real_seen, model_seen, "events after a resume");
        }
        model.data(chunk, &mut model_script, &mut model_seen);
        real.data(chunk, &mut real_script, &mut real_seen);
        fed += chunk.len();
        assert_eq!(real_seen, model_seen, "events");
        assert_eq!(real.closed, model.closed, "closed");
        assert_eq!(real.parser.buffered(), &model.buffer[..], "buffered");
        assert_eq!(real.parser.is_line_mode(), model.line_mode, "mode");
        if real.closed {
            return;
        }
        if !real.paused {
            let buffered = real.parser.buffered();
            if real.parser.is_line_mode() {
                assert!(
                    buffered.len() < real.parser.max_length() + delimiter.len(),
                    "{} bytes buffered in line mode, max_length {} + delimiter {}",
                    buffered.len(),
                    real.parser.max_length(),
                    delimiter.len()
                );
                assert!(
                    find(buffered, &delimiter).is_none(),
                    "a whole line left buffered"
                );
            } else {
                assert!(buffered.is_empty(), "bytes left buffered in raw mode");
            }
        }
        let out: usize = real_seen
            .iter()
            .map(|seen| match seen {
                Seen::Line(line) => line.len() + delimiter.len(),
                Seen::Raw(b) | Seen::TooLong(b) | Seen::Cleared(b) => b.len(),
            })
            .sum();
        assert_eq!(
            fed + real_script.handed_back,
            out + real.parser.buffered().len(),
            "bytes in (fed + handed back) != bytes out + buffered"
        );
    }

    plain_lines_do_not_depend_on_chunking(payload, &chunks, &delimiter, max);
}

/// With a plain handler (the default closes at the first overlong line), the same
/// lines come out whatever the chunking.
fn plain_lines_do_not_depend_on_chunking(
    payload: &[u8],
    chunks: &[&[u8]],
    delimiter: &[u8],
    max: usize,
) {
    let run = |chunks: &[&[u8]]| {
        let mut parser = LineParser::new(delimiter, max);
        let mut seen = Vec::new();
        for chunk in chunks {
            let mut feed = parser.feed(chunk);
            while let Some((event, _)) = feed.next_event() {
                match event {
                    LineEvent::Line(l) => seen.push(Some(l.to_vec())),
                    _ => {
                        seen.push(None);
                        return (seen, Vec::new());
                    }
                }
            }
        }
        (seen, parser.buffered().to_vec())
    };
    let whole = run(&[payload]);
    assert_eq!(run(chunks), whole, "lines depend on the chunking");
    if payload.len() <= 1024 {
        let bytes: Vec<&[u8]> = payload.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "lines differ when fed byte by byte");
    }
}
