//! Line splitting throughput of the pure parser under `LineReceiver`.
//!
//! Splits a 64 MiB buffer of 64-byte lines and one of 1 KiB lines, fed in 64 KiB chunks
//! (the reactor's default read size, so lines spanning two reads are included) and all
//! at once. Targets on one core: 30 M lines/s for 64-byte lines, 2 GB/s for 1 KiB lines.
//!
//! Run: `cargo bench --bench framing -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use twistor::framing::{LineEvent, LineParser};

/// The buffer size the issue asks for.
const INPUT_BYTES: usize = 64 * 1024 * 1024;

/// The reactor's default read buffer: what one `data_received` gets at most.
const CHUNK_BYTES: usize = 64 * 1024;

/// `INPUT_BYTES` of lines of `line_bytes` each, delimiter included.
fn lines(line_bytes: usize, delimiter: &[u8]) -> Vec<u8> {
    let body = line_bytes - delimiter.len();
    let mut out = Vec::with_capacity(INPUT_BYTES);
    let mut i = 0usize;
    while out.len() + line_bytes <= INPUT_BYTES {
        out.extend((0..body).map(|j| b' ' + ((i + j) % 94) as u8));
        out.extend_from_slice(delimiter);
        i += 1;
    }
    out
}

/// Splits `input` fed in `chunk_bytes` pieces; returns the line count and byte total so
/// nothing can be optimized away.
fn split(parser: &mut LineParser, input: &[u8], chunk_bytes: usize) -> (usize, usize) {
    let (mut count, mut total) = (0, 0);
    for chunk in input.chunks(chunk_bytes) {
        let mut feed = parser.feed(chunk);
        while let Some((event, _)) = feed.next_event() {
            if let LineEvent::Line(line) = event {
                count += 1;
                total += line.len();
            }
        }
    }
    (count, total)
}

fn bench_lines(c: &mut Criterion) {
    for (line_bytes, per_line) in [(64, true), (1024, false)] {
        let mut group = c.benchmark_group(format!("split_{line_bytes}_byte_lines"));
        group.sample_size(20);
        for delimiter in [&b"\r\n"[..], b"\n"] {
            let input = lines(line_bytes, delimiter);
            let line_count = input.len() / line_bytes;
            // Lines per second for short lines, bytes per second for long ones: the
            // units of the targets.
            group.throughput(if per_line {
                Throughput::Elements(line_count as u64)
            } else {
                Throughput::Bytes(input.len() as u64)
            });
            let name = if delimiter == b"\n" { "lf" } else { "crlf" };
            for (feeding, chunk_bytes) in [("64KiB_chunks", CHUNK_BYTES), ("whole", input.len())] {
                group.bench_function(BenchmarkId::new(name, feeding), |b| {
                    let mut parser = LineParser::new(delimiter, 16384);
                    b.iter(|| {
                        let (count, total) = split(&mut parser, black_box(&input), chunk_bytes);
                        assert_eq!(count, line_count);
                        black_box(total)
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_lines);
criterion_main!(benches);
