//! docker's output conventions: `go-units` sizes and durations, Go's `text/tabwriter`
//! columns, Go's JSON escaping, and the store handle the image commands share.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use forge_store::Store;

/// The store directory: `--root`, else `FORGE_ROOT`, else the default for this user.
pub fn store_root(flag: Option<PathBuf>) -> PathBuf {
    if let Some(r) = flag {
        return r;
    }
    if let Some(r) = std::env::var_os("FORGE_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(r);
    }
    forge_store::default_root(
        nix::unistd::geteuid().is_root(),
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// Opens the store, or prints docker-style and gives the exit code.
pub fn open_store(root: Option<PathBuf>) -> Result<Store, ExitCode> {
    let root = store_root(root);
    Store::open(&root).map_err(|e| fail(format!("opening store {}: {e}", root.display())))
}

/// The store's containers and volumes, or docker's exit status after saying why not.
pub fn open_runtime(root: Option<PathBuf>) -> Result<forge_runtime::Runtime, ExitCode> {
    let store = open_store(root)?;
    forge_runtime::Runtime::open(store).map_err(fail)
}

/// Prints `Error: <message>` on stderr, as docker prints its daemon's errors, and returns
/// docker's exit status for them (1).
pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::FAILURE
}

/// `SOURCE_DATE_EPOCH`, when set to an integer.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// Go's `%.{prec}g`.
pub fn go_g(x: f64, prec: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    let e = format!("{:.*e}", prec - 1, x);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let decimals = usize::try_from(prec as i32 - 1 - exp).unwrap_or(0);
        trim(&format!("{x:.decimals$}"))
    }
}

/// go-units' `HumanSizeWithPrecision`: decimal units (`kB`, `MB`, …).
pub fn human_size_prec(size: u64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut s = size as f64;
    let mut i = 0;
    while s >= 1000.0 && i < UNITS.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(s, prec), UNITS[i])
}

/// go-units' `HumanSize` (precision 4), as `docker system df` prints sizes.
pub fn human_size(size: u64) -> String {
    human_size_prec(size, 4)
}

/// docker's image size column (precision 3): `4.26MB`.
pub fn image_size(size: u64) -> String {
    human_size_prec(size, 3)
}

/// go-units' `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let seconds = secs;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = ((seconds as f64) / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", seconds / 3600 / 24 / 365)
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// docker's CREATED column: `2 hours ago`; empty when unknown.
pub fn created_since(created: Option<i64>) -> String {
    match created {
        Some(t) => format!("{} ago", human_duration(now_unix() - t)),
        None => "N/A".into(),
    }
}

/// Go's `time.Time.String()` in UTC, as docker's `CreatedAt`: `2024-01-27 00:42:38 +0000 UTC`.
pub fn created_at(created: Option<i64>) -> String {
    let t = created.unwrap_or(0);
    let s = forge_oci::image::rfc3339_utc(t);
    format!("{} {} +0000 UTC", &s[..10], &s[11..19])
}

/// Lays out rows as Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)` does for docker's
/// tables: every cell but a row's last is padded to its column's width plus 3, at least 10.
pub fn table(rows: &[Vec<String>]) -> String {
    padded_table(rows, 10)
}

/// Go's tabwriter with padding 3 and cells at least `min_width` wide (docker's
/// `top` uses 20); the last column unpadded.
pub fn padded_table(rows: &[Vec<String>], min_width: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count() + 3).max(min_width);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                let _ = write!(out, "{c:<w$}", w = widths[i]);
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

/// Go's `encoding/json` escapes `<`, `>` and `&` in strings; docker's JSON shows them as
/// `\u003c`, `\u003e`, `\u0026`. Outside strings those bytes never occur in JSON.
pub fn go_json(json: String) -> String {
    if !json.contains(['<', '>', '&']) {
        return json;
    }
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…`.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(image_size(4_261_550), "4.26MB");
        assert_eq!(image_size(0), "0B");
        assert_eq!(image_size(999), "999B");
        assert_eq!(image_size(1000), "1kB");
        assert_eq!(image_size(999_999), "1e+03kB");
        assert_eq!(image_size(12_345_678), "12.3MB");
        assert_eq!(human_size(4_261_550), "4.262MB");
        assert_eq!(human_size(1_073_741_824), "1.074GB");
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(2 * 3600), "2 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
        assert_eq!(human_duration(100 * 86_400), "3 months");
        assert_eq!(human_duration(3 * 365 * 86_400), "3 years");
    }

    #[test]
    fn table_like_tabwriter() {
        let t = table(&[
            vec!["REPOSITORY".into(), "TAG".into(), "SIZE".into()],
            vec!["busybox".into(), "latest".into(), "4.26MB".into()],
        ]);
        assert_eq!(
            t,
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n"
        );
        assert_eq!(created_at(Some(0)), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_json("\"<none>\"".into()), "\"\\u003cnone\\u003e\"");
    }
}
