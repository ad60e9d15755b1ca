//! Fuzz targets for twistor's parsers, run with cargo-afl (see the Fuzzing section of
//! SECURITY.md). Each target is a `check` function that decodes the fuzzer's bytes into
//! a configuration, a chunking and handler actions, drives one parser and panics when
//! an invariant does not hold. The `checks/` files are shared with the corpus replay
//! test at the repository root (`tests/fuzz_regressions.rs`), which includes them with
//! `#[path]` as this crate does.

#[path = "../checks/fuzz_input.rs"]
pub mod fuzz_input;

/// The upload example's header parser, extracted from `examples/upload.rs` by
/// `build.rs` (the example is one binary file; its parser is private to it).
pub mod upload_header {
    include!(concat!(env!("OUT_DIR"), "/upload_header.rs"));

    /// `parse_header`, with the header as a pair.
    pub fn parse(line: &[u8], max_size: u64) -> Result<(Vec<u8>, u64), String> {
        parse_header(line, max_size).map(|header| (header.name, header.size))
    }
}

/// The chat example's command parser (pure, std only).
#[path = "../../examples/chat/command.rs"]
pub mod chat_command;

#[path = "../checks/chat_command.rs"]
pub mod chat_command_check;
#[path = "../checks/int_n.rs"]
pub mod int_n;
#[path = "../checks/line.rs"]
pub mod line;
#[path = "../checks/netstring.rs"]
pub mod netstring;
#[path = "../checks/resp.rs"]
pub mod resp_check;
#[path = "../checks/string_script.rs"]
pub mod string_script;
#[path = "../checks/tls_line.rs"]
pub mod tls_line;
#[path = "../checks/upload_header.rs"]
pub mod upload_header_check;

/// Every file of `corpus/<target>/` and `regressions/<target>/` (crashers kept), run
/// through the target's check: `cargo test --lib` in `fuzz/` (plain cargo; only the
/// binaries need `cargo afl`). The root's `tests/fuzz_regressions.rs` does the same for
/// the targets it can include (not `upload_header`, which needs `build.rs`).
#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    fn replay(target: &str, check: fn(&[u8])) {
        let mut files = 0;
        for dir in ["corpus", "regressions"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let data = fs::read(&path).expect("a corpus file");
                eprintln!("{}", path.display());
                check(&data);
                files += 1;
            }
        }
        assert!(files > 0, "no corpus for {target}");
    }

    #[test]
    fn chat_command() {
        replay("chat_command", super::chat_command_check::check);
    }

    #[test]
    fn line() {
        replay("line", super::line::check);
    }

    #[test]
    fn int_n() {
        replay("int_n", super::int_n::check);
    }

    #[test]
    fn netstring() {
        replay("netstring", super::netstring::check);
    }

    #[test]
    fn resp() {
        replay("resp", super::resp_check::check);
    }

    #[test]
    fn tls_line() {
        replay("tls_line", super::tls_line::check);
    }

    #[test]
    fn upload_header() {
        replay("upload_header", super::upload_header_check::check);
    }
}
