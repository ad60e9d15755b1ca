//! Python's `websockets` package, which the WebSocket tests use as an independent
//! client.

use std::process::Command;
use std::sync::OnceLock;

/// Whether `python3` can import `websockets`, installing it once into the user site
/// if not. Prints `skipped: python websockets not found` when it cannot: the caller
/// then returns, and the test passes.
pub fn have_websockets() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    let have = *HAVE.get_or_init(|| {
        let import = || {
            Command::new("python3")
                .args(["-c", "import websockets.sync.client"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if import() {
            return true;
        }
        for extra in [&[][..], &["--break-system-packages"][..]] {
            let _ = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--user", "websockets"])
                .args(extra)
                .output();
            if import() {
                return true;
            }
        }
        false
    });
    if !have {
        eprintln!("skipped: python websockets not found");
    }
    have
}
