//! The fuzz corpus, replayed: every file of `fuzz/corpus/<target>/` (the seeds) and of
//! `fuzz/regressions/<target>/` (crashers the fuzzer found, minimised, if any) is run
//! through the same check as the fuzz target, so that `cargo test` keeps what fuzzing
//! established without cargo-afl.
//!
//! The checks live in `fuzz/checks/` and are included here with `#[path]`, as the fuzz
//! crate includes them. The `upload_header` target needs the fuzz crate's `build.rs`
//! (it extracts the parser from the upload example), so its corpus is replayed by
//! `cargo test --lib` in `fuzz/` instead.

use std::fs;
use std::path::Path;

#[path = "../fuzz/checks/fuzz_input.rs"]
mod fuzz_input;

#[path = "../examples/chat/command.rs"]
#[allow(dead_code)] // the chat uses more of it than the check does
mod chat_command;

#[path = "../fuzz/checks/chat_command.rs"]
mod chat_command_check;
#[path = "../fuzz/checks/int_n.rs"]
mod int_n;
#[path = "../fuzz/checks/line.rs"]
mod line;
#[path = "../fuzz/checks/netstring.rs"]
mod netstring;
#[path = "../fuzz/checks/resp.rs"]
mod resp_check;
#[path = "../fuzz/checks/string_script.rs"]
mod string_script;
#[cfg(feature = "tls")]
#[path = "../fuzz/checks/tls_line.rs"]
mod tls_line;

/// Runs `check` on every file kept for `target`; fails if there is none.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let data = fs::read(&path).expect("a corpus file");
            // Named in the output, so a failure says which file.
            eprintln!("replaying {}", path.display());
            check(&data);
            files += 1;
        }
    }
    assert!(files > 0, "no corpus files for {target}");
}

#[test]
fn line_corpus() {
    replay("line", line::check);
}

#[test]
fn int_n_corpus() {
    replay("int_n", int_n::check);
}

#[test]
fn netstring_corpus() {
    replay("netstring", netstring::check);
}

#[test]
fn resp_corpus() {
    replay("resp", resp_check::check);
}

#[test]
fn chat_command_corpus() {
    replay("chat_command", chat_command_check::check);
}

#[test]
#[cfg(feature = "tls")]
fn tls_line_corpus() {
    replay("tls_line", tls_line::check);
}
