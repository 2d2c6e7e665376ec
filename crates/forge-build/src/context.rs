//! The build context: which files a COPY/ADD selects, and their content
//! digest.
//!
//! Paths are `/`-separated and relative to the context root. `.dockerignore`d
//! paths do not exist as far as a build can tell. A source never leaves the
//! root: `..` is cleaned away as docker does (`../x` is `x`), and symlinks in
//! the context are entries of their own (their target is content), never
//! followed. Sources match with Go's `filepath.Match` rules per path
//! component.
//!
//! What a COPY selects and its digest are computed by one enumeration, in
//! [`crate::ops::copy`] (`copy` and `source_digest`). File contents are hashed
//! once: [`StatCache`] maps a file's
//! (path, device, inode, size, mtime, ctime) to its digest across builds, so an
//! unchanged context reads no file contents.

use forge_dockerfile::dockerignore::{Matcher, PatternError};
use forge_oci::{Algorithm, Digest, Hasher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{path}: not found in the build context")]
    NotFound { path: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid .dockerignore: {0}")]
    Ignore(#[from] PatternError),
    #[error("invalid source pattern {0:?}")]
    BadPattern(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The kind of an entry, with what identifies its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Kind {
    File,
    Dir,
    Symlink(String),
    Other,
}

/// One entry of the context.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative, `/`-separated.
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub meta: fs::Metadata,
}

/// A build context directory.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    ignore: Matcher,
}

impl BuildContext {
    /// Opens `root`, reading `<dockerfile name>.dockerignore` next to the
    /// Dockerfile when present, else the context's `.dockerignore`.
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<BuildContext, ContextError> {
        let mut text = None;
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            let candidate = PathBuf::from(name);
            if candidate.is_file() {
                text = Some(fs::read_to_string(&candidate).map_err(io_err(&candidate))?);
            }
        }
        if text.is_none() {
            let candidate = root.join(".dockerignore");
            if candidate.is_file() {
                text = Some(fs::read_to_string(&candidate).map_err(io_err(&candidate))?);
            }
        }
        let ignore = match text {
            Some(t) => Matcher::parse(&t)?,
            None => Matcher::default(),
        };
        Ok(BuildContext {
            root: root.to_path_buf(),
            ignore,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `.dockerignore` hides `path`.
    pub fn is_ignored(&self, path: &str) -> bool {
        !path.is_empty() && path != "." && self.ignore.matches(path)
    }

    fn entry(&self, rel: &str) -> Result<Option<Entry>, ContextError> {
        let full = if rel.is_empty() || rel == "." {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        let meta = match fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(20 /* ENOTDIR */) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(io_err(&full)(e)),
        };
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err(&full))?;
            Kind::Symlink(target.to_string_lossy().into_owned())
        } else {
            Kind::Other
        };
        Ok(Some(Entry {
            path: if rel.is_empty() {
                ".".into()
            } else {
                rel.to_string()
            },
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if ft.is_file() { meta.len() } else { 0 },
            meta,
        }))
    }

    /// Every entry at and under `rel` (itself first, then sorted depth-first),
    /// skipping ignored paths and those `exclude` matches. Directories that
    /// are ignored are still entered when an exception could re-include
    /// something below them, as docker does.
    pub fn walk(
        &self,
        rel: &str,
        exclude: &Matcher,
        f: &mut dyn FnMut(&Entry) -> Result<(), ContextError>,
    ) -> Result<(), ContextError> {
        let Some(top) = self.entry(rel)? else {
            return Err(ContextError::NotFound { path: rel.into() });
        };
        f(&top)?;
        if top.kind != Kind::Dir {
            return Ok(());
        }
        let mut stack = vec![rel.to_string()];
        while let Some(dir) = stack.pop() {
            let full = if dir.is_empty() || dir == "." {
                self.root.clone()
            } else {
                self.root.join(&dir)
            };
            let mut names: Vec<String> = fs::read_dir(&full)
                .map_err(io_err(&full))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                let p = if dir.is_empty() || dir == "." {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                let hidden = self.is_ignored(&p) || (!exclude.is_empty() && exclude.matches(&p));
                let Some(e) = self.entry(&p)? else { continue };
                if hidden {
                    if e.kind == Kind::Dir
                        && (self.ignore.has_exceptions() || exclude.has_exceptions())
                    {
                        subdirs.push(p);
                    }
                    continue;
                }
                f(&e)?;
                if e.kind == Kind::Dir {
                    subdirs.push(p);
                }
            }
            // Depth-first in sorted order.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }
}

/// Go's `filepath.Match` for one path component (no `/` in `name`).
/// `None` for a malformed pattern.
pub fn go_match(pattern: &str, name: &str) -> Option<bool> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point for the last '*'.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    let (matched, next) = match_class(&p, pi + 1, n.get(ni).copied())?;
                    if matched && ni < n.len() {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1)?;
                    if ni < n.len() && n[ni] == c {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && ni < n.len() && n[ni] == c => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Some(true);
        }
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => {
                // Still validate the rest of the pattern, as Go does.
                return validate(&p[pi.min(p.len())..]).map(|_| false);
            }
        }
    }
}

fn validate(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                p.get(i + 1)?;
                i += 2;
            }
            '[' => {
                let (_, next) = match_class(p, i + 1, None)?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Some(())
}

/// A `[...]` class starting after `[` at `start`; returns whether `c`
/// matches and the index after `]`.
fn match_class(p: &[char], start: usize, c: Option<char>) -> Option<(bool, usize)> {
    let mut i = start;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        if lo == '\\' {
            lo = *p.get(i + 1)?;
            i += 1;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            hi = p[i + 1];
            if hi == '\\' {
                hi = *p.get(i + 2)?;
                i += 1;
            }
            i += 2;
        }
        if c.is_some_and(|c| lo <= c && c <= hi) {
            matched = true;
        }
    }
}

/// File content digests remembered across builds, keyed by what changes
/// when a file changes.
#[derive(Debug, Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: HashMap<String, CachedStat>,
    dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CachedStat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    digest: String,
}

impl StatCache {
    /// Loads the cache kept at `path` (a missing or unreadable file is an
    /// empty cache: it only costs rehashing).
    pub fn load(path: &Path) -> StatCache {
        let entries = fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<BTreeMap<String, CachedStat>>(&b).ok())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        StatCache {
            path: Some(path.to_path_buf()),
            entries,
            dirty: false,
        }
    }

    /// Writes the cache back if it changed: temp file, fsync, rename.
    pub fn save(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let sorted: BTreeMap<&String, &CachedStat> = self.entries.iter().collect();
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let bytes = serde_json::to_vec(&sorted).map_err(io::Error::other)?;
        {
            let mut f = fs::File::create(&tmp)?;
            io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }

    /// The content digest of `root/rel`, from the cache when its stat is
    /// unchanged.
    pub fn file_digest(
        &mut self,
        root: &Path,
        rel: &str,
        meta: &fs::Metadata,
    ) -> Result<Digest, ContextError> {
        let mut d = self.file_digests(root, &[(rel.to_owned(), meta.clone())])?;
        Ok(d.remove(0))
    }

    /// The content digests of the files `root/rel`, in order: from the cache where a
    /// file's stat is unchanged, the others read and hashed on every core (a CI
    /// machine starts with no stat cache, and a context can be large).
    pub fn file_digests(
        &mut self,
        root: &Path,
        files: &[(String, fs::Metadata)],
    ) -> Result<Vec<Digest>, ContextError> {
        let key = |rel: &str| format!("{}\0{rel}", root.display());
        let mut out: Vec<Option<Digest>> = files
            .iter()
            .map(|(rel, meta)| {
                let c = self.entries.get(&key(rel))?;
                (*c == CachedStat::of(meta, c.digest.clone()))
                    .then(|| Digest::parse(&c.digest).ok())
                    .flatten()
            })
            .collect();
        let misses: Vec<usize> = (0..files.len()).filter(|&i| out[i].is_none()).collect();
        let hashed = hash_files_parallel(root, files, &misses)?;
        for (i, d) in misses.into_iter().zip(hashed) {
            let (rel, meta) = &files[i];
            self.entries
                .insert(key(rel), CachedStat::of(meta, d.to_string()));
            self.dirty = true;
            out[i] = Some(d);
        }
        Ok(out.into_iter().flatten().collect())
    }
}

impl CachedStat {
    fn of(meta: &fs::Metadata, digest: String) -> CachedStat {
        CachedStat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            digest,
        }
    }
}

/// The sha256 of each `files[i]` for `i` in `which`, in that order, read by as many
/// threads as there are cores (each takes the next file until none is left).
fn hash_files_parallel(
    root: &Path,
    files: &[(String, fs::Metadata)],
    which: &[usize],
) -> Result<Vec<Digest>, ContextError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hash = |rel: &str| -> Result<Digest, ContextError> {
        let path = root.join(rel);
        let mut f = fs::File::open(&path).map_err(io_err(&path))?;
        let mut h = Hasher::new(Algorithm::Sha256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io_err(&path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(which.len().div_ceil(16))
        .max(1);
    if threads == 1 {
        return which.iter().map(|&i| hash(&files[i].0)).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Vec<(usize, Result<Digest, ContextError>)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = which.get(k) else { break };
                        done.push((k, hash(&files[i].0)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut ordered: Vec<Option<Result<Digest, ContextError>>> =
        (0..which.len()).map(|_| None).collect();
    for (k, r) in results.into_iter().flatten() {
        ordered[k] = Some(r);
    }
    ordered
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(ContextError::Io {
                    path: root.to_path_buf(),
                    source: io::Error::other("a hashing thread panicked"),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_vectors() {
        // From Go's path/filepath match_test.go.
        let cases: &[(&str, &str, Option<bool>)] = &[
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*", "abc", Some(true)),
            ("a*/b", "abc/b", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^b-d]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a[^a]b", "a☺b", Some(true)),
            ("a???b", "a☺b", Some(false)),
            ("[a-ζ]*", "α", Some(true)),
            ("*[a-ζ]", "A", Some(false)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[\\-]", "-", Some(true)),
            ("[x\\-]", "x", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[x\\-]", "z", Some(false)),
            ("[", "a", None),
            ("[^", "a", None),
            ("a[", "a", None),
            ("*x", "xxx", Some(true)),
        ];
        for (p, n, want) in cases {
            assert_eq!(go_match(p, n), *want, "{p} vs {n}");
        }
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        let r = d.path();
        fs::create_dir_all(r.join("src/sub")).expect("mkdir");
        fs::write(r.join("src/a.txt"), "a").expect("write");
        fs::write(r.join("src/b.md"), "b").expect("write");
        fs::write(r.join("src/sub/c.txt"), "c").expect("write");
        fs::write(r.join("secret.key"), "k").expect("write");
        fs::write(r.join("top.txt"), "t").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", r.join("src/link")).expect("symlink");
        fs::write(r.join(".dockerignore"), "*.key\nsrc/*.md\n").expect("write");
        d
    }

    fn copy_of(sources: &[&str], exclude: &[&str]) -> crate::graph::Copy {
        crate::graph::Copy {
            from: crate::graph::Source::Context,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            inline: Vec::new(),
            dest: "/dst/".into(),
            chown: None,
            chmod: None,
            link: false,
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            parents: false,
            add: None,
        }
    }

    fn digest(
        ctx: &BuildContext,
        sources: &[&str],
        exclude: &[&str],
        cache: &mut StatCache,
    ) -> Digest {
        crate::ops::copy::source_digest(&copy_of(sources, exclude), ctx, cache, None)
            .expect("digest")
    }

    #[test]
    fn digest_follows_content_not_mtime_and_uses_the_stat_cache() {
        let d = tree();
        let ctx = BuildContext::open(d.path(), None).expect("open");
        let mut cache = StatCache::default();
        let one = digest(&ctx, &["src"], &[], &mut cache);
        let t = fs::FileTimes::new().set_modified(std::time::SystemTime::UNIX_EPOCH);
        fs::File::options()
            .write(true)
            .open(d.path().join("src/a.txt"))
            .expect("open")
            .set_times(t)
            .expect("touch");
        assert_eq!(
            digest(&ctx, &["src"], &[], &mut cache),
            one,
            "mtime is not content"
        );
        fs::write(d.path().join("src/a.txt"), "changed").expect("write");
        let two = digest(&ctx, &["src"], &[], &mut cache);
        assert_ne!(one, two);
        // An ignored file or one outside the selection changes nothing.
        fs::write(d.path().join("src/b.md"), "ignored change").expect("write");
        fs::write(d.path().join("top.txt"), "unselected change").expect("write");
        assert_eq!(digest(&ctx, &["src"], &[], &mut cache), two);
        // --exclude drops files from the selection; globs select like the copy.
        assert_ne!(digest(&ctx, &["src"], &["**/c.txt"], &mut cache), two);
        assert_ne!(digest(&ctx, &["*.txt"], &[], &mut cache), two);
        assert!(crate::ops::copy::source_digest(
            &copy_of(&["secret.key"], &[]),
            &ctx,
            &mut cache,
            None
        )
        .is_err());
    }

    #[test]
    fn many_files_are_hashed_in_parallel_in_order_and_cached() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut files = Vec::new();
        for n in 0..200 {
            let rel = format!("f{n:03}");
            fs::write(d.path().join(&rel), format!("content {n}\n").repeat(n + 1)).expect("write");
            let meta = fs::symlink_metadata(d.path().join(&rel)).expect("meta");
            files.push((rel, meta));
        }
        let mut cache = StatCache::default();
        let got = cache.file_digests(d.path(), &files).expect("digests");
        let want: Vec<Digest> = files
            .iter()
            .map(|(rel, _)| {
                let mut h = Hasher::new(Algorithm::Sha256);
                h.update(&fs::read(d.path().join(rel)).expect("read"));
                h.finish()
            })
            .collect();
        assert_eq!(got, want);
        // All from the cache now, even with the files gone.
        cache.dirty = false;
        for (rel, _) in &files {
            fs::remove_file(d.path().join(rel)).expect("rm");
        }
        assert_eq!(cache.file_digests(d.path(), &files).expect("cached"), want);
        assert!(!cache.dirty);
        // A missing file that must be read is an error naming it.
        let err = StatCache::default()
            .file_digests(d.path(), &files[..40])
            .expect_err("gone");
        assert!(err.to_string().contains("f0"), "{err}");
    }

    #[test]
    fn stat_cache_survives_a_reload_and_avoids_reading() {
        let d = tree();
        let cache_path = d.path().join("../statcache-test.json");
        let ctx = BuildContext::open(d.path(), None).expect("open");
        let mut cache = StatCache::load(&cache_path);
        let one = digest(&ctx, &["src"], &[], &mut cache);
        cache.save().expect("save");
        let mut reloaded = StatCache::load(&cache_path);
        assert!(reloaded.entries.len() >= 2);
        let meta = fs::symlink_metadata(d.path().join("src/sub/c.txt")).expect("meta");
        let before = reloaded.entries.len();
        reloaded
            .file_digest(d.path(), "src/sub/c.txt", &meta)
            .expect("cached");
        assert!(!reloaded.dirty, "served from the cache");
        assert_eq!(reloaded.entries.len(), before);
        let again = digest(&ctx, &["src"], &[], &mut reloaded);
        assert_eq!(again, one);
        let _ = fs::remove_file(cache_path);
    }
}
