//! Container logs in docker's `json-file` format: one JSON object per line,
//! `{"log":"…\n","stream":"stdout","time":"<RFC 3339 nanos>"}`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// The log file, shared by the stdout and stderr pumps.
#[derive(Debug, Clone)]
pub struct LogWriter {
    /// `None`: output is only teed (a `--rm` container keeps no log).
    file: Option<Arc<Mutex<File>>>,
}

impl LogWriter {
    pub fn open(path: &Path) -> Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err("opening the log", path))?;
        Ok(LogWriter {
            file: Some(Arc::new(Mutex::new(file))),
        })
    }

    /// A writer that keeps nothing.
    pub fn discard() -> LogWriter {
        LogWriter { file: None }
    }

    /// Append one entry per line of `chunk` (a partial last line too, as
    /// docker does when a stream ends without a newline).
    pub fn write(&self, stream: &str, chunk: &[u8]) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let time = forge_store::import::now_rfc3339();
        let mut out = Vec::new();
        for line in chunk.split_inclusive(|b| *b == b'\n') {
            let entry = LogEntry {
                log: String::from_utf8_lossy(line).into_owned(),
                stream: stream.to_owned(),
                time: time.clone(),
            };
            serde_json::to_writer(&mut out, &entry)?;
            out.push(b'\n');
        }
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&out)
    }

    /// Copy `from` to the log (and to `tee`, if any) until EOF, splitting
    /// on lines so each entry is one line of output.
    pub fn pump(&self, stream: &str, mut from: impl Read, mut tee: Option<Box<dyn Write + Send>>) {
        let mut buf = vec![0u8; 32 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EIO: a pty whose every slave is closed.
                Err(_) => break,
            };
            if let Some(t) = tee.as_mut() {
                if t.write_all(&buf[..n]).and_then(|_| t.flush()).is_err() {
                    tee = None;
                }
            }
            pending.extend_from_slice(&buf[..n]);
            if let Some(last_nl) = pending.iter().rposition(|b| *b == b'\n') {
                let rest = pending.split_off(last_nl + 1);
                let _ = self.write(stream, &pending);
                pending = rest;
            }
        }
        if !pending.is_empty() {
            let _ = self.write(stream, &pending);
        }
    }
}

/// Options of `logs`.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub tail: Option<usize>,
    pub timestamps: bool,
}

/// Print entries of `path` from byte `offset` to `stdout`/`stderr` by
/// stream; returns the offset after the last complete line read.
pub fn copy_entries(
    path: &Path,
    offset: u64,
    opts: &LogOptions,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<u64> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => return Err(io_err("opening the log", path)(e)),
    };
    f.seek(SeekFrom::Start(offset))
        .map_err(io_err("reading the log", path))?;
    let mut reader = BufReader::new(f);
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(io_err("reading the log", path))?;
        if n == 0 || !line.ends_with('\n') {
            break; // a line being written: read it next time
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_str::<LogEntry>(&line) {
            entries.push(e);
        }
    }
    let skip = match opts.tail {
        Some(t) => entries.len().saturating_sub(t),
        None => 0,
    };
    for e in &entries[skip..] {
        let out: &mut dyn Write = if e.stream == "stderr" {
            &mut *stderr
        } else {
            &mut *stdout
        };
        let r = if opts.timestamps {
            write!(out, "{} {}", e.time, e.log)
        } else {
            out.write_all(e.log.as_bytes())
        };
        r.and_then(|_| out.flush())
            .map_err(io_err("writing the logs", "stdout"))?;
    }
    Ok(pos)
}
