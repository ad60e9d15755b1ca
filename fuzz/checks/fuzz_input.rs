//! Decoding a fuzzer's bytes into a configuration, a chunking and handler actions.
//!
//! Shared by the fuzz targets (`fuzz/src/lib.rs`) and the corpus replay test
//! (`tests/fuzz_regressions.rs`), both of which include it with `#[path]`.

/// The fuzzer's bytes, read from the front; reads past the end give zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, or 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length-prefixed list: one byte for the count (modulo `max + 1`), then that
    /// many bytes.
    pub fn list(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.byte()) % (max + 1);
        self.bytes(n)
    }

    /// Everything left, at most `max` bytes.
    pub fn rest(self, max: usize) -> &'a [u8] {
        &self.data[..self.data.len().min(max)]
    }
}

/// Cuts `payload` into chunks whose sizes are taken from `sizes` in turn (small sizes
/// mostly, some large); no sizes means one chunk. Never yields an empty chunk: the
/// reactor never delivers one (an empty feed is a resume).
pub fn cut<'a>(payload: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![payload]
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect();
    }
    let mut chunks = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let s = sizes[i % sizes.len()];
        i += 1;
        let size = match s {
            0..=191 => usize::from(s % 16) + 1,
            _ => usize::from(s - 191) * 64,
        };
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// The first occurrence of `needle` (non-empty) in `haystack`, the slow obvious way.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
