//! TLS in the connection core, with a line protocol over it, fed by the fuzzer through
//! the testing kit: a `LineReceiver` that echoes lines runs as a TLS server under
//! `HarnessBuilder::tls_server`, with a fuzzer-chosen read buffer, write cap, line
//! limit, handshake timeout and handshake byte bound, and the fuzzer plays the client.
//!
//! The certificates (a CA and a server certificate for `localhost` signed by it) are
//! made once per process with rcgen; the handshakes are made by the check itself with a
//! rustls `ClientConnection` driven by hand, so the inputs hold only the fuzzer's
//! choices and replay the same whatever the keys.
//!
//! Modes (the first byte):
//! - raw: the fuzzer's bytes are the ciphertext from the first byte (ClientHello
//!   parsing, alerts, the handshake byte bound and timeout);
//! - app: after a real handshake, the fuzzer's bytes are application data the client
//!   encrypts (the line framer over TLS, records cut across reads and feeds), then
//!   optionally raw garbage, `close_notify`, EOF;
//! - after: after a real handshake, the fuzzer's bytes raw (records that do not
//!   decrypt or parse, truncation with EOF, `close_notify` from the client first);
//! - flipped: after a real handshake, the fuzzer's bytes encrypted as application data
//!   with fuzzer-chosen bytes of the ciphertext changed.
//!
//! Between feeds, fuzzer-chosen steps move the manual clock (the handshake timeout, the
//! close timeout), change the peer window or let the peer read, and hand what the
//! server wrote to the client.
//!
//! Checked after every step:
//! - no panic escapes, and the protocol never panics (`Reason::Panic`);
//! - `Harness::buffered` never exceeds the write cap by more than the bytes TLS adds on
//!   its own (`tls_own_bytes`: the core does not check those against the cap);
//! - once lost, the connection stays lost with one reason, the one the handler's
//!   `connection_lost` got, which runs exactly once;
//! - the framer never holds a line longer than its limit;
//! - what the server wrote is a sequence of well-formed TLS records (a prefix of one).
//!
//! And per mode: no plaintext without a handshake (raw), nor from bytes the client did
//! not encrypt (after); the lines the handler got are exactly the lines the client
//! sent, up to the first overlong one, and the client decrypts their echo back (app; a
//! prefix of the lines after a write overflow, of the echo after any close but a
//! clean one); a prefix of the lines sent, whatever was changed in the records
//! (flipped).

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use twistor::framing::{LineContext, LineHandler, LineReceiver};
use twistor::testing::{Harness, HarnessBuilder};
use twistor::tls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use twistor::tls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use twistor::tls::TlsAcceptor;
use twistor::Reason;

use super::fuzz_input::{cut, Input};

/// Longest input looked at in the raw modes.
const MAX_RAW: usize = 8192;

/// Longest plaintext the client sends in the app modes.
const MAX_PAYLOAD: usize = 4096;

/// The largest TLS record on the wire (TLS 1.2's bound, above TLS 1.3's).
const MAX_RECORD: usize = 16 * 1024 + 2048;

const READ_BUFFERS: [usize; 8] = [1, 3, 5, 17, 100, 1024, 5000, 65536];
const WRITE_CAPS: [usize; 8] = [64, 300, 1024, 4096, 16384, 65536, 1 << 20, 16 << 20];
const WINDOWS: [usize; 8] = [0, 1, 5, 64, 300, 1500, 4096, 20000];
const HANDSHAKE_TIMEOUTS: [Duration; 4] = [
    Duration::from_secs(10),
    Duration::from_secs(1),
    Duration::from_millis(300),
    Duration::from_secs(5),
];
/// Handshake byte bounds, for the raw mode (a real handshake needs the default).
const HANDSHAKE_BYTES: [usize; 4] = [128 * 1024, 0, 100, 2000];

/// The server's acceptor and the client's configurations, made once per process: key
/// generation is slow next to one run.
struct Tls {
    acceptor: TlsAcceptor,
    /// TLS 1.3 (rustls's default) and TLS 1.2 only.
    clients: [Arc<ClientConfig>; 2],
}

fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "twistor fuzz CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key"))
            .expect("a CA");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("a server key");
        let cert = params.signed_by(&key, &ca).expect("a server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("a server config");
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).expect("the CA as a root");
        let roots = Arc::new(roots);
        let tls13 = ClientConfig::builder()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let tls12 = ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
            .with_root_certificates(roots)
            .with_no_client_auth();
        Tls {
            acceptor: TlsAcceptor::new(Arc::new(server)),
            clients: [Arc::new(tls13), Arc::new(tls12)],
        }
    })
}

/// Echoes every line, and records what it got.
#[derive(Default)]
struct Echo {
    lines: Vec<Vec<u8>>,
    too_long: usize,
    raw: usize,
    lost: Vec<String>,
}

impl LineHandler for Echo {
    fn line_received(&mut self, cx: &mut LineContext<'_, '_>, line: &[u8]) {
        self.lines.push(line.to_vec());
        cx.send_line(line);
    }

    fn raw_data_received(&mut self, _: &mut LineContext<'_, '_>, _: &[u8]) {
        self.raw += 1;
    }

    fn line_length_exceeded(&mut self, cx: &mut LineContext<'_, '_>, _: &[u8]) {
        self.too_long += 1;
        cx.lose_connection();
    }

    fn connection_lost(&mut self, _: &mut LineContext<'_, '_>, reason: Reason) {
        self.lost.push(reason.to_string());
    }
}

type Server = LineReceiver<Echo>;

/// Checks that a byte stream is a sequence of TLS records, as it goes.
#[derive(Default)]
struct Records {
    header: Vec<u8>,
    body_left: usize,
}

impl Records {
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 5 {
                let h = std::mem::take(&mut self.header);
                let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
                assert!(
                    (20..=23).contains(&h[0]) && h[1] == 3 && (1..=3).contains(&h[2]),
                    "the server wrote something that is not a TLS record: {h:?}"
                );
                assert!(
                    (1..=MAX_RECORD).contains(&len),
                    "a TLS record of {len} bytes"
                );
                self.body_left = len;
            }
        }
    }
}

/// A rustls client driven by hand: the test moves its bytes.
struct Client {
    conn: rustls::ClientConnection,
    /// What it decrypted.
    plain: Vec<u8>,
    /// The error that stopped it, if one did.
    failed: Option<rustls::Error>,
}

impl Client {
    fn new(config: Arc<ClientConfig>) -> Client {
        let name = ServerName::try_from("localhost").expect("a server name");
        let mut conn = rustls::ClientConnection::new(config, name).expect("a client");
        conn.set_buffer_limit(None);
        Client {
            conn,
            plain: Vec::new(),
            failed: None,
        }
    }

    /// The ciphertext rustls has for the server.
    fn ciphertext(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out).expect("writing to a Vec");
        }
        out
    }

    /// Takes in what the server wrote.
    fn receive(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.failed.is_none() {
            match self.conn.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => break,
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.failed = Some(e);
            }
            // WouldBlock once what is there is read; what was read is kept anyway.
            let _ = self.conn.reader().read_to_end(&mut self.plain);
        }
    }
}

/// What the fuzzer chose besides the mode and the bytes.
struct Settings {
    read_buffer: usize,
    cap: usize,
    max_length: usize,
    handshake_timeout: Duration,
    handshake_bytes: usize,
    tls12: bool,
    /// Keep the tail of each batch of ciphertext for the next feed, so that records
    /// are cut across feeds.
    hold_tail: bool,
    /// Bit 0: EOF at the end; bit 1: `close_notify` from the client (after the data
    /// in app mode, before the bytes in after mode); bit 2: garbage after the data
    /// (app mode).
    end: u8,
}

impl Settings {
    fn decode(input: &mut Input<'_>) -> Settings {
        let a = input.byte();
        let b = input.byte();
        let m = input.byte();
        let end = input.byte();
        Settings {
            read_buffer: READ_BUFFERS[usize::from(a % 8)],
            cap: WRITE_CAPS[usize::from(a >> 5)],
            max_length: match m {
                0..=199 => usize::from(m % 50),
                _ => usize::from(m - 199) * 300,
            },
            handshake_timeout: HANDSHAKE_TIMEOUTS[usize::from(b % 4)],
            handshake_bytes: HANDSHAKE_BYTES[usize::from((b >> 2) % 4)],
            tls12: b & 0x10 != 0,
            hold_tail: b & 0x20 != 0,
            end,
        }
    }
}

/// One run: the harness, the client if any, and what is checked as it goes.
struct Run<'a> {
    h: Harness<Server>,
    client: Option<Client>,
    records: Records,
    cap: usize,
    /// How far past the cap `buffered()` may go: the bytes TLS adds on its own, which
    /// the core queues without checking the cap (see `tls_own_bytes`).
    slack: usize,
    max_length: usize,
    /// Steps between feeds, used in turn.
    ops: &'a [u8],
    next_op: usize,
    lost: Option<String>,
    eof: bool,
}

impl<'a> Run<'a> {
    fn new(settings: &Settings, ops: &'a [u8], real_handshake: bool) -> Run<'a> {
        let tls = tls();
        let acceptor = tls
            .acceptor
            .clone()
            .handshake_timeout(settings.handshake_timeout)
            .max_handshake_bytes(if real_handshake {
                HANDSHAKE_BYTES[0]
            } else {
                settings.handshake_bytes
            });
        let h = HarnessBuilder::new()
            .read_buffer_bytes(settings.read_buffer)
            .write_cap_bytes(settings.cap)
            .write_watermarks(settings.cap / 2, settings.cap / 8)
            .tls_server(&acceptor)
            .build(
                LineReceiver::new(Echo::default())
                    .delimiter(b"\n")
                    .max_length(settings.max_length),
            );
        let mut run = Run {
            h,
            client: None,
            records: Records::default(),
            cap: settings.cap,
            slack: tls_own_bytes(settings.cap, !real_handshake),
            max_length: settings.max_length,
            ops,
            next_op: 0,
            lost: None,
            eof: false,
        };
        run.h.connect();
        run.check();
        if real_handshake {
            run.handshake(tls.clients[usize::from(settings.tls12)].clone());
        }
        run
    }

    fn echo(&self) -> &Echo {
        self.h.protocol().handler()
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        if let Some(Reason::Panic(m)) = self.h.lost() {
            panic!("the protocol panicked: {m}");
        }
        let buffered = self.h.buffered();
        assert!(
            buffered <= self.cap + self.slack,
            "{buffered} bytes buffered, over the write cap of {} and the {} bytes TLS may add",
            self.cap,
            self.slack
        );
        let lost = self.h.lost().map(|r| r.to_string());
        match (&self.lost, lost) {
            (None, now) => self.lost = now,
            (Some(before), Some(now)) => assert_eq!(before, &now, "the reason changed"),
            (Some(before), None) => panic!("lost ({before}), then not"),
        }
        let echo = self.echo();
        match &self.lost {
            None => assert!(echo.lost.is_empty(), "connection_lost before the end"),
            Some(reason) => assert_eq!(
                echo.lost,
                std::slice::from_ref(reason),
                "connection_lost once, with the reason"
            ),
        }
        let held = self.h.protocol().buffered().len();
        assert!(
            held <= self.max_length,
            "{held} bytes held by the framer, over the line limit {}",
            self.max_length
        );
    }

    /// Takes what the server wrote: checked as records, and given to the client.
    fn take(&mut self) {
        let out = self.h.take_written();
        self.records.push(&out);
        if let Some(client) = &mut self.client {
            client.receive(&out);
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if !self.eof && !bytes.is_empty() {
            self.h.feed(bytes);
            self.check();
        }
    }

    fn eof(&mut self) {
        if !self.eof {
            self.eof = true;
            self.h.eof();
            self.check();
        }
    }

    /// The next step the fuzzer chose: the low 3 bits say which, the high 5 bits are
    /// its argument.
    fn op(&mut self) {
        if self.ops.is_empty() {
            return;
        }
        let op = self.ops[self.next_op % self.ops.len()];
        self.next_op += 1;
        let arg = op >> 3;
        match op & 7 {
            0 | 1 => {}
            2 => self.h.advance(Duration::from_millis(u64::from(arg) * 100)),
            3 => self.h.set_peer_window(Some(WINDOWS[usize::from(arg % 8)])),
            4 => self.h.set_peer_window(None),
            5 => self.h.peer_reads(usize::from(arg) * 37 + 1),
            6 => self.take(),
            _ => self.h.advance(Duration::from_secs(u64::from(arg) * 5)),
        }
        self.check();
    }

    /// Feeds `bytes` in the fuzzer's chunks, a step after each.
    fn feed_chunks(&mut self, bytes: &[u8], sizes: &[u8]) {
        for chunk in cut(bytes, sizes) {
            self.feed(chunk);
            self.op();
        }
    }

    /// A real handshake, with the window open and no clock moving: it must succeed.
    fn handshake(&mut self, config: Arc<ClientConfig>) {
        let mut client = Client::new(config);
        for _ in 0..10 {
            let out = client.ciphertext();
            self.feed(&out);
            let back = self.h.take_written();
            self.records.push(&back);
            client.receive(&back);
            if let Some(e) = &client.failed {
                panic!("the handshake failed on the client: {e}");
            }
            if !client.conn.is_handshaking() {
                let out = client.ciphertext();
                self.feed(&out);
                assert!(self.h.is_open(), "the handshake failed: {:?}", self.lost);
                self.client = Some(client);
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("a client after the handshake")
    }

    /// The end of every run: the window opens and the client takes everything.
    fn finish(&mut self) {
        self.h.set_peer_window(None);
        self.check();
        self.take();
    }
}

/// How far past the write cap the connection's queue may go: not at all. The core
/// checks the cap on the plaintext a protocol writes and again after encryption, on
/// what TLS adds (records' headers and tags, handshake flights, alerts). An earlier
/// core checked only the first, and this target found the queue 4 bytes past a cap of
/// 64 (`fuzz/regressions/tls_line/cap_passed_by_record_overhead`).
fn tls_own_bytes(_cap: usize, _flights: bool) -> usize {
    0
}

/// The lines a line receiver on `\n` with `max_length` delivers from `payload` before
/// it closes at the first overlong line (finished or not).
fn expected_lines(payload: &[u8], max_length: usize) -> Vec<&[u8]> {
    payload
        .split(|&b| b == b'\n')
        .take(payload.iter().filter(|&&b| b == b'\n').count())
        .take_while(|line| line.len() <= max_length)
        .collect()
}

/// The echo of `lines`.
fn echo_of(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|line| line.iter().copied().chain([b'\n']))
        .collect()
}

/// Runs one fuzz input; panics if an invariant does not hold.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte() % 4;
    let settings = Settings::decode(&mut input);
    let sizes = input.list(16);
    let ops = input.list(16);
    match mode {
        0 => raw(&settings, sizes, ops, input.rest(MAX_RAW)),
        1 => {
            let garbage = if settings.end & 4 != 0 {
                input.list(255)
            } else {
                &[]
            };
            app(&settings, sizes, ops, garbage, input.rest(MAX_PAYLOAD));
        }
        2 => after(&settings, sizes, ops, input.rest(MAX_RAW)),
        _ => {
            let flips = input.list(24);
            flipped(&settings, sizes, ops, flips, input.rest(MAX_PAYLOAD));
        }
    }
}

/// The fuzzer's bytes as ciphertext from the first byte.
fn raw(settings: &Settings, sizes: &[u8], ops: &[u8], bytes: &[u8]) {
    let mut run = Run::new(settings, ops, false);
    run.feed_chunks(bytes, sizes);
    if settings.end & 1 != 0 {
        run.eof();
    }
    run.finish();
    let echo = run.echo();
    assert!(
        echo.lines.is_empty() && echo.too_long == 0 && echo.raw == 0,
        "plaintext without a handshake: {} lines, {} overlong",
        echo.lines.len(),
        echo.too_long
    );
}

/// Encrypts `payload` chunk by chunk (one record or more per chunk) and feeds the
/// ciphertext in the fuzzer's pieces, through `change` first.
fn send_encrypted(
    run: &mut Run<'_>,
    settings: &Settings,
    sizes: &[u8],
    payload: &[u8],
    mut change: impl FnMut(&mut [u8], usize),
) {
    let mut pending = Vec::new();
    let mut sent = 0;
    for chunk in cut(payload, sizes) {
        if run.client().conn.writer().write_all(chunk).is_err() {
            // The client got an alert (in the flipped mode) and is done.
            break;
        }
        let mut out = run.client().ciphertext();
        change(&mut out, sent);
        sent += out.len();
        pending.extend_from_slice(&out);
        let pieces = cut(&pending, sizes);
        let keep = if settings.hold_tail && pieces.len() > 1 {
            pieces[pieces.len() - 1].len()
        } else {
            0
        };
        let fed = pending.len() - keep;
        let now: Vec<u8> = pending.drain(..fed).collect();
        run.feed_chunks(&now, sizes);
    }
    run.feed(&pending);
}

/// After a handshake, the fuzzer's bytes as application data, then garbage,
/// `close_notify` and EOF as chosen.
fn app(settings: &Settings, sizes: &[u8], ops: &[u8], garbage: &[u8], payload: &[u8]) {
    let mut run = Run::new(settings, ops, true);
    send_encrypted(&mut run, settings, sizes, payload, |_, _| {});
    run.feed_chunks(garbage, sizes);
    if settings.end & 2 != 0 {
        run.client().conn.send_close_notify();
        let out = run.client().ciphertext();
        run.feed(&out);
    }
    if settings.end & 1 != 0 {
        run.eof();
    }
    run.finish();

    let expected = expected_lines(payload, settings.max_length);
    let got = &run.echo().lines;
    let overflowed = matches!(run.h.lost(), Some(Reason::WriteOverflow));
    if overflowed {
        assert!(
            got.len() <= expected.len() && got.iter().zip(&expected).all(|(g, e)| g == e),
            "the lines got are not a prefix of the lines sent"
        );
    } else {
        assert_eq!(got, &expected, "the lines got are not the lines sent");
    }
    let echo = echo_of(got);
    // Every close but a clean one drops what is queued (a truncation included: the
    // peer's TCP close without `close_notify` ends the connection at once).
    let flushed = matches!(run.h.lost(), None | Some(Reason::Done));
    let client = run.client.as_ref().expect("a client");
    if garbage.is_empty() && flushed {
        if let Some(e) = &client.failed {
            panic!("the client failed: {e}");
        }
        assert_eq!(client.plain, echo, "the client did not get the echo");
    } else {
        assert!(
            echo.starts_with(&client.plain),
            "the client got what was not the echo"
        );
    }
}

/// After a handshake (and `close_notify` from the client if chosen), the fuzzer's
/// bytes raw.
fn after(settings: &Settings, sizes: &[u8], ops: &[u8], bytes: &[u8]) {
    let mut run = Run::new(settings, ops, true);
    if settings.end & 2 != 0 {
        run.client().conn.send_close_notify();
        let out = run.client().ciphertext();
        run.feed(&out);
    }
    run.feed_chunks(bytes, sizes);
    if settings.end & 1 != 0 {
        run.eof();
    }
    run.finish();
    let echo = run.echo();
    assert!(
        echo.lines.is_empty() && echo.too_long == 0 && echo.raw == 0,
        "plaintext from bytes the client did not encrypt: {} lines, {} overlong",
        echo.lines.len(),
        echo.too_long
    );
    let client = run.client.as_ref().expect("a client");
    assert!(client.plain.is_empty(), "an echo of nothing");
}

/// After a handshake, the fuzzer's bytes as application data with bytes of the
/// ciphertext changed: `flips` is (position high, position low, xor) triples.
fn flipped(settings: &Settings, sizes: &[u8], ops: &[u8], flips: &[u8], payload: &[u8]) {
    let mut run = Run::new(settings, ops, true);
    let flips: Vec<(usize, u8)> = flips
        .chunks_exact(3)
        .map(|f| (usize::from(u16::from_be_bytes([f[0], f[1]])), f[2]))
        .collect();
    send_encrypted(&mut run, settings, sizes, payload, |out, at| {
        for &(pos, xor) in &flips {
            if (at..at + out.len()).contains(&pos) {
                out[pos - at] ^= xor;
            }
        }
    });
    if settings.end & 1 != 0 {
        run.eof();
    }
    run.finish();
    let expected = expected_lines(payload, settings.max_length);
    let got = &run.echo().lines;
    assert!(
        got.len() <= expected.len() && got.iter().zip(&expected).all(|(g, e)| g == e),
        "lines that were not sent got through changed records"
    );
    let echo = echo_of(got);
    let client = run.client.as_ref().expect("a client");
    assert!(
        echo.starts_with(&client.plain),
        "the client got what was not the echo"
    );
}
