//! Parallel gzip, as pigz's independent-blocks mode (`pigz -i`) writes it: the input is cut
//! into fixed 1 MiB blocks, each compressed on its own by a pool of threads as raw deflate
//! ending in a sync flush (byte-aligned, not final) or, for the last block, a final
//! block, and the pieces are written in order inside one gzip member whose trailer holds
//! the CRC-32 and length of the whole input. Any gzip reader sees one ordinary member.
//!
//! Each block is encoded the cheapest way that loses nothing, chosen from samples of it
//! (see [`choose`]): at the requested level, Huffman-only (no match search) or run-length
//! matches only when that is about as small, or stored when nothing shrinks it, as klauspost/compress skips
//! incompressible input. The output depends only on the input, the level and the block
//! size, never on the number of threads or their timing, so layers stay reproducible. Blocks do not share a
//! dictionary, which costs well under 1% of size at 1 MiB blocks. Memory stays bounded:
//! at most `2 × threads + 2` blocks are in flight.
//!
//! With a [`BlockMemo`] ([`ParallelGzip::with_memo`]) the blocks are cut where the content
//! says instead (a gear rolling hash over the bytes, FastCDC's, between [`MIN_CUT`] and
//! [`MAX_CUT`]), so that the cuts after an insertion or deletion fall where they fell
//! before, and a block the memo has seen is copied from the blob that holds it instead of
//! compressed. Either way a block's bytes depend only on its content, the level and
//! whether it is the last: the output is the same with or without the memo's entries.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::gzmemo::{BlockKey, BlockMemo, BlockRecord, MIN_MEMO_BLOCK};

/// Uncompressed bytes per independently compressed block.
pub const BLOCK_SIZE: usize = 1 << 20;

/// Content-defined blocks (memo mode) are at least this long, but for the last...
pub const MIN_CUT: usize = 256 * 1024;
/// ... and at most this long.
pub const MAX_CUT: usize = 2 << 20;
/// A cut after a byte where these bits of the rolling hash are all zero: one chance in
/// 2^20, so blocks are about `MIN_CUT` + 1 MiB long. The top bits: in a gear hash
/// (`h = (h << 1) + GEAR[byte]`) they depend on the last 64 bytes, the low ones on fewer.
const CUT_MASK: u64 = 0xffff_f000_0000_0000;

/// FastCDC's gear table: 256 fixed pseudo-random words (splitmix64 from a fixed seed),
/// part of the output format.
const GEAR: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut x: u64 = 0x6a09_e667_f3bc_c908;
    let mut i = 0;
    while i < 256 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
};

/// Where content-defined blocks end.
#[derive(Debug, Default)]
struct Chunker {
    hash: u64,
}

impl Chunker {
    /// How many bytes of `data` go into the block that already holds `buffered` bytes,
    /// and whether the block ends after them.
    fn take(&mut self, buffered: usize, data: &[u8]) -> (usize, bool) {
        // No cut before MIN_CUT, so those bytes need no hashing.
        let mut i = MIN_CUT.saturating_sub(buffered).min(data.len());
        let limit = data.len().min(MAX_CUT - buffered);
        while i < limit {
            self.hash = (self.hash << 1).wrapping_add(GEAR[usize::from(data[i])]);
            i += 1;
            if self.hash & CUT_MASK == 0 {
                self.hash = 0;
                return (i, true);
            }
        }
        if buffered + i >= MAX_CUT {
            self.hash = 0;
            return (i, true);
        }
        (i, false)
    }
}

type Job = (u64, Vec<u8>, bool);
/// A compressed block, with its memo key when it was compressed here (not found in the
/// memo) and is worth remembering.
type Done = (u64, io::Result<(Vec<u8>, Option<BlockKey>)>);

/// A gzip writer that compresses blocks on several threads.
pub struct ParallelGzip<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    jobs: Option<Sender<Job>>,
    results: Receiver<Done>,
    pending: BTreeMap<u64, (Vec<u8>, Option<BlockKey>)>,
    next_seq: u64,
    next_write: u64,
    max_inflight: u64,
    workers: Vec<JoinHandle<()>>,
    /// Memo mode: content-defined cuts, and the blocks compressed so far for the memo.
    chunker: Option<Chunker>,
    written: u64,
    records: Vec<BlockRecord>,
}

/// Bytes per sample, and samples per block, of the per-block encoding choice.
const SAMPLE_LEN: usize = 16 * 1024;
const SAMPLES: usize = 4;

/// How one block is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// LZ77 + Huffman at the requested level (zlib's own choice of block types).
    Level,
    /// Huffman coding of literals only (zlib's `Z_HUFFMAN_ONLY`): for data with a skewed
    /// byte distribution but no repeated strings (base64, most compressed-then-encoded
    /// data), where match searching costs time and gains nothing.
    HuffmanOnly,
    /// Matches at distance one only (zlib's `Z_RLE`) plus Huffman codes: for data whose
    /// only repeats are runs, such as a tar of base64 or other encoded files, where the
    /// runs are the zero padding of headers and file ends. A third of `Level`'s time.
    Rle,
    /// Stored (uncompressed) deflate blocks: for incompressible data (random bytes,
    /// already-compressed files), where neither matches nor Huffman codes shrink it.
    Stored,
}

/// The level of the first, cheap match-search probe: zlib's "fast" deflate with
/// dynamic Huffman codes (level 1 uses fixed codes, which would flatter the others).
const PROBE_LEVEL: u32 = 2;

/// Picks the encoding of a block from a few samples, as klauspost/compress (the gzip
/// umoci and pgzip use) skips incompressible data: each of [`SAMPLES`] evenly spaced
/// [`SAMPLE_LEN`]-byte samples is compressed Huffman-only, run-length only and at
/// [`PROBE_LEVEL`]. Stored when none makes the samples any smaller; else the smaller of
/// Huffman-only and run-length (Huffman-only on a tie, it is cheaper) when it is within
/// 0.4% of the probe (there are next to no matches to find). Only otherwise are the
/// samples compressed at `level`, and the cheap encodings still win when within 0.4% of
/// that; `level` is chosen when neither is. The probe spares the costly `level` samples
/// (a fifth of the work on encoded data) where the cheap encodings win anyway.
/// Deterministic: depends only on the block's bytes and the level, so layers stay
/// reproducible.
fn choose(data: &[u8], level: u32) -> io::Result<Encoding> {
    if level == 0 || data.len() < SAMPLES * SAMPLE_LEN * 2 {
        return Ok(Encoding::Level);
    }
    let step = data.len() / SAMPLES;
    let samples = || (0..SAMPLES).map(move |i| &data[i * step..i * step + SAMPLE_LEN]);
    let mut out = vec![0u8; SAMPLE_LEN * 2 + 1024];
    let mut sizes = |level: u32, strategy: zlib_rs::Strategy| -> io::Result<usize> {
        let mut total = 0;
        for sample in samples() {
            total += deflate_sample(sample, &mut out, level, strategy)?;
        }
        Ok(total)
    };
    let raw = SAMPLES * SAMPLE_LEN;
    let huff = sizes(level, zlib_rs::Strategy::HuffmanOnly)?;
    let rle = sizes(level, zlib_rs::Strategy::Rle)?;
    let fast = sizes(PROBE_LEVEL.min(level), zlib_rs::Strategy::Default)?;
    if fast.min(huff).min(rle) >= raw {
        return Ok(Encoding::Stored);
    }
    let close = |n: usize, to: usize| n <= to + to / 256;
    // The cheaper of the two that is (about) the smaller.
    let best_cheap = if close(huff, rle) {
        (huff, Encoding::HuffmanOnly)
    } else {
        (rle, Encoding::Rle)
    };
    if close(best_cheap.0, fast) {
        return Ok(best_cheap.1);
    }
    if level <= PROBE_LEVEL {
        return Ok(Encoding::Level);
    }
    let lz = sizes(level, zlib_rs::Strategy::Default)?;
    Ok(if close(huff, lz) {
        Encoding::HuffmanOnly
    } else if close(rle, lz) {
        Encoding::Rle
    } else {
        Encoding::Level
    })
}

fn zconfig(level: u32, strategy: zlib_rs::Strategy) -> zlib_rs::DeflateConfig {
    zlib_rs::DeflateConfig {
        level: i32::try_from(level).unwrap_or(6),
        method: zlib_rs::Method::Deflated,
        // Raw deflate, 32 KiB window, zlib's default memory level (as flate2 uses).
        window_bits: -15,
        mem_level: 8,
        strategy,
    }
}

fn zerr(e: zlib_rs::DeflateError) -> io::Error {
    io::Error::other(format!("deflate: {}", e.as_str()))
}

/// The compressed size of `sample` (one-shot, final block) with `strategy`.
fn deflate_sample(
    sample: &[u8],
    out: &mut [u8],
    level: u32,
    strategy: zlib_rs::Strategy,
) -> io::Result<usize> {
    let mut d = zlib_rs::Deflate::new_with_config(zconfig(level, strategy));
    match d
        .compress(sample, out, zlib_rs::DeflateFlush::Finish)
        .map_err(zerr)?
    {
        zlib_rs::Status::StreamEnd => usize::try_from(d.total_out())
            .map_err(|_| io::Error::other("deflate: sample output too large")),
        // Out of room: larger than the sample by far, so certainly no gain.
        _ => Ok(out.len()),
    }
}

/// `data` as stored deflate blocks (at most 65,535 bytes each, byte-aligned), the last
/// one final when `last`. Needs no sync marker: stored blocks end on a byte boundary.
fn stored_blocks(data: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + (data.len() / 65_535 + 1) * 5);
    // `choose` only picks stored for blocks of 128 KiB or more, so there is a chunk.
    let n = data.len().div_ceil(65_535);
    for (i, chunk) in data.chunks(65_535).enumerate() {
        let fin = last && i + 1 == n;
        out.push(u8::from(fin));
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// Deflate of the whole block with a strategy flate2 does not offer (Huffman-only,
/// run-length), ending in a sync flush or a final block.
fn strategy_block(
    data: &[u8],
    level: u32,
    strategy: zlib_rs::Strategy,
    last: bool,
) -> io::Result<Vec<u8>> {
    let mut d = zlib_rs::Deflate::new_with_config(zconfig(level, strategy));
    let flush = if last {
        zlib_rs::DeflateFlush::Finish
    } else {
        zlib_rs::DeflateFlush::SyncFlush
    };
    let mut out = vec![0u8; data.len() + data.len() / 8 + 4096];
    let (mut used_in, mut used_out) = (0usize, 0usize);
    loop {
        if out.len() - used_out < 4096 {
            out.resize(out.len() * 2, 0);
        }
        let status = d
            .compress(&data[used_in..], &mut out[used_out..], flush)
            .map_err(zerr)?;
        used_in = usize::try_from(d.total_in())
            .unwrap_or(data.len())
            .min(data.len());
        used_out = usize::try_from(d.total_out())
            .unwrap_or(out.len())
            .min(out.len());
        let done = match status {
            zlib_rs::Status::StreamEnd => true,
            // A sync flush is complete once the compressor returns with output space left.
            _ => !last && used_in == data.len() && used_out < out.len(),
        };
        if done {
            out.truncate(used_out);
            return Ok(out);
        }
    }
}

fn deflate_block(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    match choose(data, level)? {
        Encoding::Stored => return Ok(stored_blocks(data, last)),
        Encoding::HuffmanOnly => {
            return strategy_block(data, level, zlib_rs::Strategy::HuffmanOnly, last)
        }
        Encoding::Rle => return strategy_block(data, level, zlib_rs::Strategy::Rle, last),
        Encoding::Level => {}
    }
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = usize::try_from(c.total_in()).unwrap_or(data.len());
        let status = c
            .compress_vec(&data[consumed.min(data.len())..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = usize::try_from(c.total_in()).unwrap_or(0) == data.len();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once the compressor returns with output space left.
            _ if !last && all_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

impl<W: Write> ParallelGzip<W> {
    /// A writer into `out` at gzip `level` (0-9) using `threads` compressing threads.
    pub fn new(out: W, level: u32, threads: usize) -> io::Result<ParallelGzip<W>> {
        Self::start(out, level, threads, None)
    }

    /// A writer in memo mode: content-defined blocks, the ones `memo` knows copied from
    /// where they are. [`finish_with_blocks`](Self::finish_with_blocks) tells what to
    /// remember once the blob is stored.
    pub fn with_memo(
        out: W,
        level: u32,
        threads: usize,
        memo: Arc<BlockMemo>,
    ) -> io::Result<ParallelGzip<W>> {
        Self::start(out, level, threads, Some(memo))
    }

    fn start(
        out: W,
        level: u32,
        threads: usize,
        memo: Option<Arc<BlockMemo>>,
    ) -> io::Result<ParallelGzip<W>> {
        let level = level.min(9);
        let threads = threads.max(1);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let chunker = memo.is_some().then(Chunker::default);
        let mut workers = Vec::new();
        for i in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            let memo = memo.clone();
            let h = std::thread::Builder::new()
                .name(format!("pgzip-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, data, last)) = job else { return };
                    let done = match &memo {
                        Some(memo) if data.len() >= MIN_MEMO_BLOCK => {
                            let key = BlockKey::of(&data, level, last);
                            match memo.lookup(&key) {
                                Some(bytes) => Ok((bytes, None)),
                                None => deflate_block(&data, level, last).map(|b| (b, Some(key))),
                            }
                        }
                        _ => deflate_block(&data, level, last).map(|b| (b, None)),
                    };
                    if tx.send((seq, done)).is_err() {
                        return;
                    }
                })?;
            workers.push(h);
        }
        let mut out = out;
        // flate2's GzBuilder header: no name, mtime 0, XFL from the level, OS "unknown".
        let xfl = match level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255];
        out.write_all(&header)?;
        Ok(ParallelGzip {
            out: Some(out),
            buf: Vec::with_capacity(BLOCK_SIZE),
            crc: crc32fast::Hasher::new(),
            total: 0,
            jobs: Some(job_tx),
            results: done_rx,
            pending: BTreeMap::new(),
            next_seq: 0,
            next_write: 0,
            max_inflight: 2 * threads as u64 + 2,
            workers,
            chunker,
            written: header.len() as u64,
            records: Vec::new(),
        })
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.next_seq - self.next_write >= self.max_inflight {
            self.receive(true)?;
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK_SIZE));
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        jobs.send((self.next_seq, data, last))
            .map_err(|_| io::Error::other("gzip worker threads stopped"))?;
        self.next_seq += 1;
        self.receive(false)
    }

    /// Takes finished blocks (waiting for one when `block`) and writes what is in order.
    fn receive(&mut self, block: bool) -> io::Result<()> {
        let mut wait = block;
        loop {
            let got = if wait {
                self.results
                    .recv()
                    .map_err(|_| io::Error::other("gzip worker threads stopped"))
                    .map(Some)?
            } else {
                self.results.try_recv().ok()
            };
            let Some((seq, result)) = got else { break };
            self.pending.insert(seq, result?);
            wait = false;
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        while let Some((data, key)) = self.pending.remove(&self.next_write) {
            out.write_all(&data)?;
            let len = data.len() as u64;
            if let Some(key) = key {
                self.records.push(BlockRecord {
                    key,
                    offset: self.written,
                    len,
                    crc: crc32fast::hash(&data),
                });
            }
            self.written += len;
            self.next_write += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.finish_with_blocks().map(|(w, _)| w)
    }

    /// As [`finish`](Self::finish), with the blocks that were compressed here (memo mode
    /// only): give them to [`BlockMemo::record`] with the blob's digest once it is stored.
    pub fn finish_with_blocks(mut self) -> io::Result<(W, Vec<BlockRecord>)> {
        self.submit(true)?;
        while self.next_write < self.next_seq {
            self.receive(true)?;
        }
        self.jobs = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        let crc = std::mem::take(&mut self.crc).finalize();
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&((self.total & 0xffff_ffff) as u32).to_le_bytes())?;
        out.flush()?;
        Ok((out, std::mem::take(&mut self.records)))
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let (n, cut) = match &mut self.chunker {
            Some(chunker) => chunker.take(self.buf.len(), data),
            None => {
                let n = data.len().min(BLOCK_SIZE - self.buf.len());
                (n, self.buf.len() + n == BLOCK_SIZE)
            }
        };
        self.buf.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        self.total += n as u64;
        if cut {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// Does not cut a block (that would make the output depend on when callers flush).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        // Closing the job channel stops the workers.
        self.jobs = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn data(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                } else {
                    b"layer "[i % 6]
                }
            })
            .collect()
    }

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn base64ish(n: usize) -> Vec<u8> {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        random(n, 7)
            .iter()
            .map(|b| A[usize::from(b & 63)])
            .collect()
    }

    /// A tar of base64 files as a COPY of generated assets makes: 4-16 KiB of base64
    /// per file, each behind a mostly-zero 512-byte header and padded with zeros.
    fn tar_of_base64(n: usize) -> Vec<u8> {
        let body = base64ish(n);
        let sizes = random(n / 1024 + 1, 13);
        let mut out = Vec::with_capacity(n + 1024);
        let (mut used, mut i) = (0usize, 0usize);
        while out.len() < n {
            let mut header = vec![0u8; 512];
            header[..8].copy_from_slice(format!("f{i:07}").as_bytes());
            out.extend_from_slice(&header);
            let len = 4096 + usize::from(sizes[i % sizes.len()]) * 48;
            let take = len.min(body.len() - used);
            out.extend_from_slice(&body[used..used + take]);
            used = (used + take) % (body.len() - 20_000);
            out.resize(out.len().next_multiple_of(512), 0);
            i += 1;
        }
        out.truncate(n);
        out
    }

    fn text(n: usize) -> Vec<u8> {
        let words: Vec<String> = (0..500).map(|i| format!("w{i:04} ")).collect();
        let r = random(n, 11);
        let mut out = Vec::with_capacity(n + 8);
        let mut i = 0;
        while out.len() < n {
            out.extend_from_slice(words[usize::from(r[i % n]) * 2 % 500].as_bytes());
            i += 1;
        }
        out.truncate(n);
        out
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut back)
            .expect("valid gzip");
        back
    }

    #[test]
    fn blocks_are_encoded_by_content() {
        let n = BLOCK_SIZE;
        assert_eq!(choose(&random(n, 3), 6).expect("choose"), Encoding::Stored);
        assert_eq!(
            choose(&base64ish(n), 6).expect("choose"),
            Encoding::HuffmanOnly
        );
        assert_eq!(choose(&tar_of_base64(n), 6).expect("choose"), Encoding::Rle);
        assert_eq!(choose(&text(n), 6).expect("choose"), Encoding::Level);
        assert_eq!(choose(&random(n, 3), 0).expect("choose"), Encoding::Level);
    }

    #[test]
    fn mixed_encodings_round_trip_in_one_member() {
        // Every order of stored, Huffman-only, run-length and level blocks, with a short
        // tail, and the last block of each kind (final block flag).
        let parts = [
            random(BLOCK_SIZE, 5),
            base64ish(BLOCK_SIZE),
            text(BLOCK_SIZE),
            tar_of_base64(BLOCK_SIZE),
        ];
        for order in [
            [0, 1, 2, 3],
            [3, 2, 1, 0],
            [1, 0, 3, 2],
            [0, 3, 2, 1],
            [2, 3, 0, 1],
        ] {
            for tail in [0usize, 300_000] {
                let mut input: Vec<u8> = order.iter().flat_map(|&i| parts[i].clone()).collect();
                input.extend_from_slice(&parts[order[0]][..tail]);
                let mut w = ParallelGzip::new(Vec::new(), 6, 2).expect("new");
                w.write_all(&input).expect("write");
                let gz = w.finish().expect("finish");
                assert_eq!(gunzip(&gz), input, "{order:?} + {tail}");
            }
        }
        // Stored output is barely larger than the input; Huffman-only shrinks base64.
        let r = random(4 * BLOCK_SIZE, 9);
        let mut w = ParallelGzip::new(Vec::new(), 6, 2).expect("new");
        w.write_all(&r).expect("write");
        let gz = w.finish().expect("finish");
        assert!(gz.len() < r.len() + r.len() / 1000 + 64, "{}", gz.len());
        let b = base64ish(2 * BLOCK_SIZE);
        let mut w = ParallelGzip::new(Vec::new(), 6, 2).expect("new");
        w.write_all(&b).expect("write");
        let gz = w.finish().expect("finish");
        assert!(gz.len() < b.len() * 8 / 10, "{}", gz.len());
    }

    #[test]
    fn output_is_one_gzip_member_independent_of_threads() {
        for n in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE + 77,
        ] {
            let input = data(n);
            let mut outs = Vec::new();
            for threads in [1, 2, 5] {
                let mut w = ParallelGzip::new(Vec::new(), 6, threads).expect("new");
                for chunk in input.chunks(100_000) {
                    w.write_all(chunk).expect("write");
                    w.flush().expect("flush");
                }
                outs.push(w.finish().expect("finish"));
            }
            assert!(
                outs.windows(2).all(|w| w[0] == w[1]),
                "{n}: same bytes for any thread count"
            );
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&outs[0][..])
                .read_to_end(&mut back)
                .expect("valid gzip");
            assert_eq!(back, input, "{n}: round trip");
        }
    }

    /// Writes `input` in memo mode into a blob named by its digest under `blobs`, records
    /// its blocks; returns the bytes and how many blocks were compressed (not copied).
    fn memo_write(
        memo: &Arc<BlockMemo>,
        blobs: &std::path::Path,
        input: &[u8],
    ) -> (Vec<u8>, usize) {
        let mut w = ParallelGzip::with_memo(Vec::new(), 6, 2, Arc::clone(memo)).expect("new");
        for chunk in input.chunks(70_001) {
            w.write_all(chunk).expect("write");
        }
        let (gz, blocks) = w.finish_with_blocks().expect("finish");
        let digest = forge_oci::Digest::sha256_of(&gz);
        std::fs::write(blobs.join(digest.hex()), &gz).expect("blob");
        memo.record(&digest, &blocks);
        (gz, blocks.len())
    }

    #[test]
    fn memo_mode_copies_unchanged_blocks_and_gives_the_same_bytes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let blobs = tmp.path().join("blobs");
        std::fs::create_dir_all(&blobs).expect("blobs");
        let memo = Arc::new(BlockMemo::new(tmp.path().join("memo"), blobs.clone()));
        let fresh = |name: &str| Arc::new(BlockMemo::new(tmp.path().join(name), blobs.clone()));

        let a = tar_of_base64(12 * BLOCK_SIZE);
        let (gz_a, compressed_a) = memo_write(&memo, &blobs, &a);
        assert_eq!(gunzip(&gz_a), a);
        assert!(compressed_a >= 5, "content-defined blocks: {compressed_a}");

        // The same input again: every block comes from the memo, byte-identical output.
        let (again, compressed) = memo_write(&memo, &blobs, &a);
        assert_eq!(again, gz_a);
        assert_eq!(compressed, 0);

        // 3,000 bytes inserted in the middle: the cuts after it fall where they did, so
        // only the blocks around the change are compressed again.
        let mut b = a[..a.len() / 2].to_vec();
        b.extend_from_slice(&base64ish(3000));
        b.extend_from_slice(&a[a.len() / 2..]);
        let (gz_b, compressed_b) = memo_write(&memo, &blobs, &b);
        assert_eq!(gunzip(&gz_b), b);
        assert!(
            compressed_b <= 2,
            "{compressed_b} of about {compressed_a} blocks"
        );
        // The memo changes nothing in the output.
        let (gz_b_fresh, _) = memo_write(&fresh("empty"), &blobs, &b);
        assert_eq!(gz_b, gz_b_fresh);

        // A damaged blob is a miss, never copied.
        let hex = forge_oci::Digest::sha256_of(&gz_a).hex().to_owned();
        let mut damaged = gz_a.clone();
        let mid = damaged.len() / 3;
        damaged[mid] ^= 0xff;
        let copy = fresh("damaged");
        let digest = forge_oci::Digest::sha256_of(&gz_a);
        let mut w = ParallelGzip::with_memo(Vec::new(), 6, 2, Arc::clone(&copy)).expect("new");
        w.write_all(&a).expect("write");
        let (_, blocks) = w.finish_with_blocks().expect("finish");
        copy.record(&digest, &blocks);
        std::fs::write(blobs.join(&hex), &damaged).expect("damage");
        let (gz, compressed) = memo_write(&copy, &blobs, &a);
        assert_eq!(gz, gz_a, "the damaged block was compressed again");
        assert_eq!(compressed, 1);
        // Blocks whose blob is gone are pruned.
        std::fs::remove_file(blobs.join(&hex)).expect("rm");
        let before = std::fs::read_dir(tmp.path().join("damaged"))
            .expect("memo")
            .count();
        assert!(copy.prune().expect("prune") >= 1);
        let after = std::fs::read_dir(tmp.path().join("damaged"))
            .expect("memo")
            .count();
        assert!(after < before);
    }

    #[test]
    fn content_defined_blocks_stay_within_bounds() {
        let mut c = Chunker::default();
        let data = base64ish(9 * MAX_CUT);
        let (mut at, mut sizes) = (0usize, Vec::new());
        let mut buffered = 0usize;
        while at < data.len() {
            let (n, cut) = c.take(buffered, &data[at..(at + 50_000).min(data.len())]);
            assert!(n > 0);
            at += n;
            buffered += n;
            if cut {
                sizes.push(buffered);
                buffered = 0;
            }
        }
        assert!(sizes.len() >= 5, "{sizes:?}");
        assert!(
            sizes.iter().all(|&s| (MIN_CUT..=MAX_CUT).contains(&s)),
            "{sizes:?}"
        );
        assert!(
            sizes.iter().any(|&s| s < MAX_CUT),
            "some cuts come from the content"
        );
    }
}
