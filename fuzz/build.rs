//! Extracts the upload example's header parser (`parse_header`, `check_name` and the
//! `Header` struct) from `examples/upload.rs`, so that the `upload_header` target fuzzes
//! the example's own code without the example having to be split into modules.
//!
//! The section runs from the `// ----- the header -----` marker to the next
//! `// ----- ` marker; it is std-only. The build fails if the markers or the functions
//! move, rather than silently fuzzing a stale copy.

use std::env;
use std::fs;
use std::path::PathBuf;

const SOURCE: &str = "../examples/upload.rs";
const START: &str = "// ----- the header -----";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    let text = fs::read_to_string(SOURCE).expect("read examples/upload.rs");
    let start = text
        .find(START)
        .expect("examples/upload.rs has no `// ----- the header -----` section");
    let body = &text[start + START.len()..];
    let end = body
        .find("// ----- ")
        .expect("the header section of examples/upload.rs has no end marker");
    let section = &body[..end];
    for needed in ["fn parse_header(", "fn check_name(", "struct Header"] {
        assert!(
            section.contains(needed),
            "the header section of examples/upload.rs has no `{needed}`"
        );
    }
    // The example's constants that the section uses.
    let mut consts = String::new();
    for name in ["MAX_NAME_BYTES", "MAX_HEADER_BYTES"] {
        let decl = format!("const {name}: usize = ");
        let at = text
            .find(&decl)
            .unwrap_or_else(|| panic!("examples/upload.rs has no `{decl}`"));
        let line_end = at + text[at..].find('\n').expect("a line end");
        consts.push_str("pub ");
        consts.push_str(&text[at..line_end]);
        consts.push('\n');
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("upload_header.rs");
    fs::write(
        out,
        format!("// Extracted from examples/upload.rs by fuzz/build.rs.\n{consts}{section}"),
    )
    .expect("write the extracted header parser");
}
