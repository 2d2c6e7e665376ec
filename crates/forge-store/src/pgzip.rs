//! Parallel gzip, as pigz's independent-blocks mode (`pigz -i`) writes it: the input is cut
//! into fixed 1 MiB blocks, each compressed on its own by a pool of threads as raw deflate
//! ending in a sync flush (byte-aligned, not final) or, for the last block, a final
//! block, and the pieces are written in order inside one gzip member whose trailer holds
//! the CRC-32 and length of the whole input. Any gzip reader sees one ordinary member.
//!
//! The output depends only on the input, the level and the block size, never on the number
//! of threads or their timing, so layers stay reproducible. Blocks do not share a
//! dictionary, which costs well under 1% of size at 1 MiB blocks. Memory stays bounded:
//! at most `2 × threads + 2` blocks are in flight.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Uncompressed bytes per independently compressed block.
pub const BLOCK_SIZE: usize = 1 << 20;

type Job = (u64, Vec<u8>, bool);
type Done = (u64, io::Result<Vec<u8>>);

/// A gzip writer that compresses blocks on several threads.
pub struct ParallelGzip<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    jobs: Option<Sender<Job>>,
    results: Receiver<Done>,
    pending: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
    next_write: u64,
    max_inflight: u64,
    workers: Vec<JoinHandle<()>>,
}

fn deflate_block(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
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
        let level = level.min(9);
        let threads = threads.max(1);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut workers = Vec::new();
        for i in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("pgzip-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, data, last)) = job else { return };
                    if tx.send((seq, deflate_block(&data, level, last))).is_err() {
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
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
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
        while let Some(data) = self.pending.remove(&self.next_write) {
            out.write_all(&data)?;
            self.next_write += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
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
        Ok(out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        self.total += n as u64;
        if self.buf.len() == BLOCK_SIZE {
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
}
