//! Compressed gzip blocks remembered by their content, so that a layer which differs from
//! an earlier one in a few files recompresses only the blocks around those files.
//!
//! A build re-running a COPY after one source file changed writes a layer tar that is,
//! byte for byte, the previous one except near that file. [`ParallelGzip`] in memo mode
//! cuts its input where the content says (a rolling hash, so the cuts after a change
//! fall where they fell before) and compresses each block on its own; this memo maps a
//! block's content to where its compressed form already is: a byte range of a layer blob
//! in the store. A block found there is copied instead of compressed. The output is the
//! same either way (a block's compressed form depends only on its bytes, the level and
//! whether it is the last), so layers stay reproducible.
//!
//! One file per block under `cache/gzip-blocks/`, named by the key: a SHA-256 over the
//! format version, the level, the last-block flag and the block's bytes. It holds the blob
//! digest, offset, length and CRC-32 of the compressed bytes. Entries are hints: written
//! without fsync, checked on every use (the blob must be there, long enough, and the
//! range must have the recorded CRC), and anything wrong is a miss. Garbage collection
//! drops the entries whose blob is gone.
//!
//! [`ParallelGzip`]: crate::pgzip::ParallelGzip

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use forge_oci::{Algorithm, Digest, Hasher};

/// Bumped whenever the block encoder could produce other bytes for the same input.
const FORMAT: &[u8] = b"forge-gzip-block-v1\0";

/// Blocks smaller than this are compressed again rather than looked up.
pub const MIN_MEMO_BLOCK: usize = 64 * 1024;

/// A block's identity: what its compressed form depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockKey(String);

impl BlockKey {
    /// The key of `data` compressed at `level`, as the last block or not.
    pub fn of(data: &[u8], level: u32, last: bool) -> BlockKey {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(FORMAT);
        h.update(&[u8::try_from(level).unwrap_or(u8::MAX), u8::from(last)]);
        h.update(data);
        BlockKey(h.finish().hex().to_owned())
    }
}

/// Where a block's compressed bytes are in the blob being written.
#[derive(Debug, Clone)]
pub struct BlockRecord {
    pub key: BlockKey,
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

/// The memo of one store.
#[derive(Debug)]
pub struct BlockMemo {
    dir: PathBuf,
    blobs: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl BlockMemo {
    /// The memo in `dir`, for the sha256 blobs in `blobs` (`blobs/sha256/`).
    pub fn new(dir: PathBuf, blobs: PathBuf) -> BlockMemo {
        BlockMemo { dir, blobs }
    }

    fn entry(&self, key: &BlockKey) -> PathBuf {
        self.dir.join(&key.0)
    }

    /// The compressed bytes of the block `key`, if a blob in the store has them intact.
    pub fn lookup(&self, key: &BlockKey) -> Option<Vec<u8>> {
        let text = fs::read_to_string(self.entry(key)).ok()?;
        let mut fields = text.split_ascii_whitespace();
        let blob = fields.next()?;
        let offset: u64 = fields.next()?.parse().ok()?;
        let len: usize = fields.next()?.parse().ok()?;
        let crc: u32 = fields.next()?.parse().ok()?;
        if blob.len() != 64 || !blob.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let file = File::open(self.blobs.join(blob)).ok()?;
        let end = offset.checked_add(u64::try_from(len).ok()?)?;
        if file.metadata().ok()?.len() < end {
            return None;
        }
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, offset).ok()?;
        (crc32fast::hash(&bytes) == crc).then_some(bytes)
    }

    /// Remembers the blocks of the blob `blob` that were compressed to write it. Best
    /// effort: a block not remembered is only compressed again next time.
    pub fn record(&self, blob: &Digest, blocks: &[BlockRecord]) {
        if blocks.is_empty() || fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        for b in blocks {
            let tmp = self.dir.join(format!(
                ".{}.{}.{}",
                b.key.0,
                std::process::id(),
                TMP_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let line = format!("{} {} {} {}\n", blob.hex(), b.offset, b.len, b.crc);
            if fs::write(&tmp, line).is_err() || fs::rename(&tmp, self.entry(&b.key)).is_err() {
                let _ = fs::remove_file(&tmp);
            }
        }
    }

    /// Removes the entries whose blob is gone (and writers' leftovers); returns how many.
    pub fn prune(&self) -> io::Result<u64> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for e in entries {
            let e = e?;
            let keep = !e.file_name().to_string_lossy().starts_with('.')
                && blob_of(&e.path()).is_some_and(|b| self.blobs.join(b).is_file());
            if !keep {
                fs::remove_file(e.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn blob_of(entry: &Path) -> Option<String> {
    let text = fs::read_to_string(entry).ok()?;
    let blob = text.split_ascii_whitespace().next()?;
    (blob.len() == 64 && blob.bytes().all(|b| b.is_ascii_hexdigit())).then(|| blob.to_owned())
}
