//! WebSocket codec throughput: unmasking, and decoding 16 KiB frames.
//!
//! - `mask/apply_mask`: XOR-unmasking one 16 KiB payload in place.
//! - `decode/*`: 64 frames of 16 KiB (1 MiB) fed to a `Decoder` in 64 KiB chunks (the
//!   reactor's read size, so frames straddle reads): masked frames to a server (unmask,
//!   copy, and for text validate UTF-8), unmasked ones to a client (text validated in
//!   place, handed out as slices of the chunk). Text is ASCII, or mixed (two-byte
//!   characters), which takes std's slower non-ASCII validation path.
//!
//! Target on one core: 5 GB/s for unmasking and for decoding ASCII text.
//!
//! Run: `cargo bench --bench websocket -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use twistor::websocket::{apply_mask, Decoder, Encoder, Event, MessageKind, Role};

/// The frame size the issue asks for.
const FRAME_BYTES: usize = 16 * 1024;

/// Frames per run: 1 MiB, more than L2 on most machines, so the figure is not that of
/// one frame hot in L1.
const FRAMES: usize = 64;

/// The reactor's default read buffer: what one `data_received` gets at most.
const CHUNK_BYTES: usize = 64 * 1024;

fn bench_mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    group.throughput(Throughput::Bytes(FRAME_BYTES as u64));
    let mut payload = vec![0x5Au8; FRAME_BYTES];
    group.bench_function("apply_mask_16KiB", |b| {
        b.iter(|| apply_mask(black_box(&mut payload), black_box([1, 2, 3, 4])))
    });
    group.finish();
}

/// `FRAMES` frames of `payload` as the peer of `receiver` sends them.
fn frames(receiver: Role, kind: MessageKind, payload: &[u8]) -> Vec<u8> {
    let sender = match receiver {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut encoder = Encoder::with_mask_source(sender, || [0x37, 0xFA, 0x21, 0x3D]);
    let mut wire = Vec::new();
    for _ in 0..FRAMES {
        match kind {
            MessageKind::Text => {
                encoder.text(&mut wire, std::str::from_utf8(payload).unwrap());
            }
            MessageKind::Binary => encoder.binary(&mut wire, payload),
        }
    }
    wire
}

/// Decodes `wire` in `CHUNK_BYTES` chunks; returns the bytes of the messages.
fn decode(decoder: &mut Decoder, wire: &[u8]) -> usize {
    let mut total = 0;
    for chunk in wire.chunks(CHUNK_BYTES) {
        let mut feed = decoder.feed(chunk);
        while let Some(event) = feed.next_event().expect("valid input") {
            total += match event {
                Event::Text(t) => t.len(),
                Event::Binary(b) => b.len(),
                _ => 0,
            };
        }
    }
    total
}

fn bench_decode(c: &mut Criterion) {
    let ascii: Vec<u8> = (0..FRAME_BYTES).map(|i| b' ' + (i % 94) as u8).collect();
    let mixed: Vec<u8> = "aé".repeat(FRAME_BYTES / 3).into_bytes();
    let cases = [
        ("server_text_ascii", Role::Server, MessageKind::Text, &ascii),
        ("server_text_mixed", Role::Server, MessageKind::Text, &mixed),
        ("server_binary", Role::Server, MessageKind::Binary, &ascii),
        ("client_text_ascii", Role::Client, MessageKind::Text, &ascii),
        ("client_binary", Role::Client, MessageKind::Binary, &ascii),
    ];
    let mut group = c.benchmark_group("decode");
    for (name, role, kind, payload) in cases {
        let wire = frames(role, kind, payload);
        let expected = payload.len() * FRAMES;
        group.throughput(Throughput::Bytes(expected as u64));
        group.bench_function(BenchmarkId::new(name, "16KiB_frames"), |b| {
            let mut decoder = Decoder::new(role);
            b.iter(|| {
                let total = decode(&mut decoder, black_box(&wire));
                assert_eq!(total, expected);
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_mask, bench_decode);
criterion_main!(benches);
