//! The scripted handler of the string framers' checks (`int_n.rs`, `netstring.rs`):
//! actions decoded from the fuzzer's bytes (limit changes, pauses, closes), played in
//! turn, one per event, the same for the parser and its model.
//!
//! Shared with the corpus replay test (`tests/fuzz_regressions.rs`), which includes it
//! with `#[path]` as `fuzz/src/lib.rs` does.

use super::fuzz_input::Input;

/// Events per run before the scripted handler closes the connection.
const MAX_EVENTS: usize = 400;

#[derive(Clone, Copy, Debug)]
pub enum Action {
    Nothing,
    SetMax(usize),
    Pause,
    Close,
}

/// The handler's actions: a byte for their count (0 to 7; none means one `Nothing`),
/// then each action, a `SetMax` taking its limit from `limits`.
pub fn read_actions(input: &mut Input<'_>, limits: &[usize]) -> Vec<Action> {
    let mut actions: Vec<Action> = (0..usize::from(input.byte() % 8))
        .map(|_| action(input, limits))
        .collect();
    if actions.is_empty() {
        actions.push(Action::Nothing);
    }
    actions
}

fn action(input: &mut Input<'_>, limits: &[usize]) -> Action {
    match input.byte() % 8 {
        0..=3 => Action::Nothing,
        4 => Action::SetMax(limits[usize::from(input.byte()) % limits.len()]),
        5 | 6 => Action::Pause,
        _ => Action::Close,
    }
}

/// What the handler does after an event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Go,
    Pause,
    Close,
}

/// The actions, played in turn (and round again).
pub struct Script<'a> {
    actions: &'a [Action],
    n: usize,
}

impl<'a> Script<'a> {
    pub fn new(actions: &'a [Action]) -> Self {
        Script { actions, n: 0 }
    }

    /// Plays the next action after an event: a limit change goes to `max`. The
    /// `MAX_EVENTS`th event closes, whatever the action.
    pub fn act(&mut self, max: &mut usize) -> Flow {
        let action = self.actions[self.n % self.actions.len()];
        self.n += 1;
        let flow = match action {
            Action::Nothing => Flow::Go,
            Action::SetMax(n) => {
                *max = n;
                Flow::Go
            }
            Action::Pause => Flow::Pause,
            Action::Close => Flow::Close,
        };
        if self.n >= MAX_EVENTS {
            Flow::Close
        } else {
            flow
        }
    }
}
