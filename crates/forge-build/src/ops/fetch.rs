//! ADD of `http(s)://` URLs: the download, its digest, `--checksum`, and
//! the file's name and time as BuildKit's HTTP source gives them.
//!
//! The client is `ureq` (blocking, small, rustls with the webpki roots, so
//! nothing to link against; proxies from the usual environment variables).
//! The body is streamed to an anonymous temporary file while it is hashed;
//! nothing reaches the layer before the checksum is verified.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use forge_oci::{Algorithm, Digest, Hasher};

/// A downloaded URL.
pub(crate) struct Fetched {
    pub(crate) file: File,
    /// sha256 of the content.
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    /// From `Last-Modified`, when the server sent a valid one.
    pub(crate) last_modified: Option<SystemTime>,
}

#[derive(Debug)]
pub(crate) enum FetchError {
    Http(String),
    Mismatch { expected: Digest, actual: Digest },
    Io(io::Error),
}

/// Whether BuildKit takes a source as a URL to download.
pub(crate) fn is_http(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && !is_git(src)
}

/// Whether a source names a Git repository (BuildKit's `ParseGitRef`
/// shapes: `git://`, `git@host:`, `ssh://`, or an http(s) URL whose path
/// ends in `.git`).
pub(crate) fn is_git(src: &str) -> bool {
    if src.starts_with("git://") || src.starts_with("git@") || src.starts_with("ssh://") {
        return true;
    }
    if src.starts_with("http://") || src.starts_with("https://") {
        let path = src.split(['#', '?']).next().unwrap_or(src);
        return path.trim_end_matches('/').ends_with(".git");
    }
    false
}

/// The file name BuildKit gives a download: the last element of the URL's
/// path (decoded), or `__unnamed__`.
pub(crate) fn file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = match after_scheme.find('/') {
        Some(i) => &after_scheme[i..],
        None => "",
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path);
    let trimmed = decoded.trim_end_matches('/');
    let base = trimmed.rsplit('/').next().unwrap_or("");
    if base.is_empty() || base == "." || base == ".." {
        "__unnamed__".to_string()
    } else {
        base.to_string()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URLs one build downloaded without `--checksum`: the cache key of an ADD needs
/// the content (see `copy::source_digest`), and the copy then takes the same download,
/// as BuildKit resolves an HTTP source once per build. A new build asks again.
#[derive(Default)]
pub struct Downloads(std::sync::Mutex<Vec<(String, Fetched)>>);

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |d| d.len());
        write!(f, "Downloads({n} URLs)")
    }
}

impl Fetched {
    /// Another handle on the same download, reading from its start.
    fn reopen(&self) -> io::Result<Fetched> {
        use std::os::fd::AsRawFd;
        // A new open file description, so its offset is its own.
        let file = File::open(format!("/proc/self/fd/{}", self.file.as_raw_fd()))?;
        Ok(Fetched {
            file,
            digest: self.digest.clone(),
            size: self.size,
            last_modified: self.last_modified,
        })
    }
}

/// Downloads `url` into an anonymous temporary file, verifying `checksum`. Without a
/// checksum, a URL `downloads` already holds is not fetched again.
pub(crate) fn fetch(
    url: &str,
    checksum: Option<&Digest>,
    downloads: Option<&Downloads>,
) -> Result<Fetched, FetchError> {
    let Some(downloads) = downloads.filter(|_| checksum.is_none()) else {
        return download(url, checksum);
    };
    let mut done = downloads
        .0
        .lock()
        .map_err(|e| FetchError::Io(io::Error::other(e.to_string())))?;
    if let Some((_, f)) = done.iter().find(|(u, _)| u == url) {
        return f.reopen().map_err(FetchError::Io);
    }
    let fetched = download(url, None)?;
    let again = fetched.reopen().map_err(FetchError::Io)?;
    done.push((url.to_owned(), fetched));
    Ok(again)
}

fn download(url: &str, checksum: Option<&Digest>) -> Result<Fetched, FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .user_agent("forge")
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let last_modified = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let mut body = response.into_body().into_reader();
    let mut file = tempfile::tempfile().map_err(FetchError::Io)?;
    let mut sha256 = Hasher::new(Algorithm::Sha256);
    let mut other = checksum
        .filter(|c| c.algorithm() != Algorithm::Sha256)
        .map(|c| Hasher::new(c.algorithm()));
    let mut buf = vec![0u8; 128 * 1024];
    let mut size = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FetchError::Http(e.to_string())),
        };
        sha256.update(&buf[..n]);
        if let Some(h) = &mut other {
            h.update(&buf[..n]);
        }
        file.write_all(&buf[..n]).map_err(FetchError::Io)?;
        size += n as u64;
    }
    let digest = sha256.finish();
    if let Some(expected) = checksum {
        let actual = match other {
            Some(h) => h.finish(),
            None => digest.clone(),
        };
        if &actual != expected {
            return Err(FetchError::Mismatch {
                expected: expected.clone(),
                actual,
            });
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(FetchError::Io)?;
    Ok(Fetched {
        file,
        digest,
        size,
        last_modified,
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses an HTTP date as Go's `http.ParseTime` does: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94
/// 08:49:37 GMT`) or asctime (`Sun Nov  6 08:49:37 1994`).
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let month = |m: &str| MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1);
    let hms = |t: &str| -> Option<(u32, u32, u32)> {
        let mut it = t.split(':');
        let h = it.next()?.parse().ok()?;
        let m = it.next()?.parse().ok()?;
        let s = it.next()?.parse().ok()?;
        if it.next().is_some() || h > 23 || m > 59 || s > 60 {
            return None;
        }
        Some((h, m, s))
    };
    let (year, mon, day, (h, mi, se)) = if let Some((_, rest)) = s.split_once(", ") {
        let parts: Vec<&str> = rest.split_whitespace().collect();
        match parts.as_slice() {
            [d, m, y, t, "GMT"] => (y.parse::<i64>().ok()?, month(m)?, d.parse().ok()?, hms(t)?),
            [dmy, t, "GMT"] => {
                let mut it = dmy.split('-');
                let d = it.next()?.parse().ok()?;
                let m = month(it.next()?)?;
                let y: i64 = it.next()?.parse().ok()?;
                // Go's two-digit years: 69..99 → 19xx, 00..68 → 20xx.
                let y = if y >= 69 { 1900 + y } else { 2000 + y };
                (y, m, d, hms(t)?)
            }
            _ => return None,
        }
    } else {
        let parts: Vec<&str> = s.split_whitespace().collect();
        match parts.as_slice() {
            [_, m, d, t, y] => (y.parse().ok()?, month(m)?, d.parse().ok()?, hms(t)?),
            _ => return None,
        }
    };
    if !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, mon, day);
    let secs = days * 86400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se);
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()))
    } else {
        Some(UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds() {
        assert_eq!(
            file_name("https://example.com/a/b.tar.gz?x=1#f"),
            "b.tar.gz"
        );
        assert_eq!(file_name("https://example.com/dir/"), "dir");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert_eq!(file_name("http://h/a%20b"), "a b");
        assert!(is_git("https://github.com/moby/buildkit.git#v0.10"));
        assert!(is_git("git@github.com:moby/buildkit.git"));
        assert!(!is_git("https://example.com/file.tar"));
        assert!(is_http("https://example.com/file.tar"));
        assert!(!is_http("https://github.com/moby/buildkit.git"));
    }

    #[test]
    fn http_dates() {
        let want = UNIX_EPOCH + Duration::from_secs(784111777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(want)
        );
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(want));
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
    }
}
