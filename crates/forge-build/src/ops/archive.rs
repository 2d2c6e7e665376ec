//! ADD's archives: telling a tar archive by its content and extracting it
//! into the destination.
//!
//! Detection is BuildKit's (`isArchivePath`): the stream, decompressed if
//! its first bytes say gzip, bzip2, xz or zstd, must start with a valid tar
//! header (checksum right). Extraction follows BuildKit's
//! `applyRootArchive`: entry names are cleaned and one leaving the
//! extraction root is an error; symlinks met in an entry's parents
//! (already in the destination, or made by earlier entries) are followed
//! inside the extraction root; an entry replaces what is at its path unless
//! both are directories; missing parents are made 0755 root; owners come
//! from the archive unless `--chown` is given; directory times are set
//! last. Every write goes through the destination's descriptors, never
//! outside the layer directory.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use forge_oci::layer::{peek, sniff, Decoder, Sniffed, SNIFF_LEN};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use tar::EntryType;

use super::copy::{io_at, ioe_at, CopyError, CopyOutcome};
use super::dest::Dest;
use super::fsx::{self, walk_dir, Comps, Node, ResolveError, Walked};

/// How much of a file detection reads (bzip2 needs a whole block, up to
/// 900 kB, before it yields anything).
const DETECT_PREFIX: usize = 1 << 20;

/// A writer that keeps the first 512 bytes and then refuses more.
struct FirstBlock(Vec<u8>);

impl io::Write for FirstBlock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = 512 - self.0.len();
        if room == 0 {
            return Err(io::Error::other("enough"));
        }
        let n = room.min(buf.len());
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether `file` holds a tar archive, compressed or not. Reads with
/// `pread`, so the file offset is untouched.
pub(crate) fn is_tar(file: &mut File) -> bool {
    let mut prefix = vec![0u8; DETECT_PREFIX];
    let mut filled = 0;
    while filled < prefix.len() {
        match file.read_at(&mut prefix[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    prefix.truncate(filled);
    let mut block = Vec::with_capacity(512);
    let ok = match sniff(&prefix) {
        Sniffed::Known(c) => Decoder::new(io::Cursor::new(&prefix[..]), c)
            .and_then(|mut d| d.by_ref().take(512).read_to_end(&mut block))
            .is_ok(),
        Sniffed::Bzip2 => bzip2::read::MultiBzDecoder::new(io::Cursor::new(&prefix[..]))
            .take(512)
            .read_to_end(&mut block)
            .is_ok(),
        Sniffed::Xz => {
            let mut out = FirstBlock(Vec::with_capacity(512));
            let _ = lzma_rs::xz_decompress(&mut io::Cursor::new(&prefix[..]), &mut out);
            block = out.0;
            true
        }
    };
    ok && block.len() == 512 && valid_header(&block)
}

/// Go's `archive/tar` acceptance of a first header block: not all zeros,
/// and the checksum field matches the unsigned or the signed byte sum.
fn valid_header(b: &[u8]) -> bool {
    if b.len() < 512 || b.iter().all(|&x| x == 0) {
        return false;
    }
    let field = &b[148..156];
    let trimmed: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&c| c == 0 || c == b' ')
        .collect();
    let end = trimmed
        .iter()
        .rposition(|&c| c != 0 && c != b' ')
        .map_or(0, |i| i + 1);
    let digits = &trimmed[..end];
    let value = if digits.is_empty() {
        0
    } else {
        match std::str::from_utf8(digits)
            .ok()
            .and_then(|s| i64::from_str_radix(s, 8).ok())
        {
            Some(v) => v,
            None => return false,
        }
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b[..512].iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    value == unsigned || value == signed
}

/// The decompressed stream of an archive file.
fn decoder(file: File) -> io::Result<Box<dyn Read>> {
    let (prefix, chained) = peek(file, SNIFF_LEN)?;
    Ok(match sniff(&prefix) {
        Sniffed::Known(c) => Box::new(Decoder::new(chained, c)?),
        Sniffed::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(chained)),
        Sniffed::Xz => Box::new(XzReader::spawn(chained)?),
    })
}

/// xz decoding (lzma-rs writes into a `Write`): a thread decodes into a
/// pipe that we read.
struct XzReader {
    pipe: File,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl XzReader {
    fn spawn<R: Read + Send + 'static>(input: R) -> io::Result<XzReader> {
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let thread = std::thread::Builder::new()
            .name("xz-decode".into())
            .spawn(move || {
                let mut input = io::BufReader::new(input);
                let mut out = File::from(wr);
                lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| e.to_string())
            })?;
        Ok(XzReader {
            pipe: File::from(rd),
            thread: Some(thread),
        })
    }
}

impl Read for XzReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(t) = self.thread.take() {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(io::Error::other(format!("xz: {e}"))),
                    Err(_) => return Err(io::Error::other("xz decoder failed")),
                }
            }
        }
        Ok(n)
    }
}

/// An entry name, cleaned; `Err` when it leaves the extraction root.
fn clean_entry(raw: &[u8]) -> Result<Comps, ()> {
    let mut out: Comps = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(());
                }
            }
            p => out.push(OsStr::from_bytes(p).to_os_string()),
        }
    }
    Ok(out)
}

/// A PAX time (`1234567890.123456789`).
fn pax_time(v: &str) -> Option<TimeSpec> {
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) => (s, f),
        None => (v, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        nanos = digits.parse().ok()?;
        for _ in digits.len()..9 {
            nanos *= 10;
        }
    }
    if v.starts_with('-') && nanos > 0 {
        return Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos));
    }
    Some(TimeSpec::new(secs, nanos))
}

/// Extracts the archive in `file` into the directory `root` (resolved and
/// present in the merged destination).
pub(crate) fn extract(
    file: File,
    dest: &mut Dest,
    root: &[OsString],
    owner: Option<(u32, u32)>,
    out: &mut CopyOutcome,
    shown: &str,
) -> Result<(), CopyError> {
    let err = |reason: String| CopyError::Archive {
        archive: shown.to_string(),
        reason,
    };
    let reader = decoder(file).map_err(|e| err(e.to_string()))?;
    let mut archive = tar::Archive::new(reader);
    let mut dirs: Vec<(Comps, TimeSpec, TimeSpec)> = Vec::new();
    let entries = archive.entries().map_err(|e| err(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| err(e.to_string()))?;
        let ty = entry.header().entry_type();
        if matches!(
            ty,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let shown_entry = String::from_utf8_lossy(&raw).into_owned();
        let rel = clean_entry(&raw).map_err(|_| {
            err(format!(
                "archive path {shown_entry:?} is outside extraction root"
            ))
        })?;
        if rel.is_empty() {
            continue;
        }
        let is_dir = ty == EntryType::Directory;
        let resolved = resolve_in(dest, root, rel, is_dir).map_err(|e| match e {
            ResolveError::TooManyLinks => CopyError::TooManyLinks(shown_entry.clone()),
            ResolveError::Io(source) => CopyError::Io {
                op: "resolve",
                path: shown_entry.clone(),
                source,
            },
        })?;
        let Some((leaf, parent)) = resolved.split_last() else {
            continue;
        };
        let mut full = root.to_vec();
        full.extend(parent.iter().cloned());
        let dp = dest.mkdir_p(&full, (0, 0))?;
        full.push(leaf.clone());
        let existing = dp.child(leaf).map_err(ioe_at("stat", &full))?;
        if existing.exists() && !(is_dir && matches!(existing, Node::Dir(_))) {
            dp.remove_all(leaf, &full)?;
        }

        let hdr = entry.header();
        let old = hdr.as_old();
        let mode = number(&old.mode, hdr.mode().map(u64::from)).map_err(|e| err(e.to_string()))?
            as u32
            & 0o7777;
        let (uid, gid) = match owner {
            Some(o) => o,
            None => (
                u32::try_from(number(&old.uid, hdr.uid()).map_err(|e| err(e.to_string()))?)
                    .unwrap_or(0),
                u32::try_from(number(&old.gid, hdr.gid()).map_err(|e| err(e.to_string()))?)
                    .unwrap_or(0),
            ),
        };
        let secs = number(&old.mtime, hdr.mtime()).map_err(|e| err(e.to_string()))?;
        let mut mtime = TimeSpec::new(i64::try_from(secs).unwrap_or(0), 0);
        let mut atime: Option<TimeSpec> = None;
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let link_name = entry.link_name_bytes().map(|l| l.into_owned());
        let device = (
            hdr.device_major().ok().flatten().unwrap_or(0),
            hdr.device_minor().ok().flatten().unwrap_or(0),
        );
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.as_bytes().to_vec(), ext.value_bytes().to_vec()));
                } else if key == "mtime" {
                    if let Some(t) = ext.value().ok().and_then(pax_time) {
                        mtime = t;
                    }
                } else if key == "atime" {
                    atime = ext.value().ok().and_then(pax_time);
                }
            }
        }
        // BuildKit: the later of mtime and atime.
        let atime = match atime {
            Some(a) if (a.tv_sec(), a.tv_nsec()) > (mtime.tv_sec(), mtime.tv_nsec()) => a,
            _ => mtime,
        };
        let uid = Some(Uid::from_raw(uid));
        let gid = Some(Gid::from_raw(gid));
        let up = dp.upper.as_fd();
        let name = leaf.as_os_str();
        match ty {
            EntryType::Directory => {
                if !dp.in_upper(name).map_err(ioe_at("stat", &full))? {
                    mkdirat(up, name, Mode::from_bits_truncate(0o700))
                        .map_err(io_at("mkdir", &full))?;
                }
                fchownat(up, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(io_at("chown", &full))?;
                fchmodat(
                    up,
                    name,
                    Mode::from_bits_truncate(mode),
                    FchmodatFlags::FollowSymlink,
                )
                .map_err(io_at("chmod", &full))?;
                if !xattrs.is_empty() {
                    if let Ok(Some(d)) = fsx::open_dir_at(up, name) {
                        fsx::set_xattrs(d.as_fd(), &xattrs);
                    }
                }
                dest.forget(&full);
                dirs.push((full.clone(), atime, mtime));
                out.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous => {
                let fd = openat(
                    up,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io_at("create", &full))?;
                let mut f = File::from(fd);
                let n =
                    io::copy(&mut entry, &mut f).map_err(|e| err(format!("{shown_entry}: {e}")))?;
                out.bytes += n;
                fchown(f.as_fd(), uid, gid).map_err(io_at("chown", &full))?;
                fchmod(f.as_fd(), Mode::from_bits_truncate(mode)).map_err(io_at("chmod", &full))?;
                fsx::set_xattrs(f.as_fd(), &xattrs);
                futimens(f.as_fd(), &atime, &mtime).map_err(io_at("utimes", &full))?;
                out.files += 1;
            }
            EntryType::Symlink => {
                let target = link_name
                    .ok_or_else(|| err(format!("{shown_entry}: symlink without target")))?;
                symlinkat(OsStr::from_bytes(&target), up, name).map_err(io_at("symlink", &full))?;
                fchownat(up, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(io_at("chown", &full))?;
                utimensat(up, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
                    .map_err(io_at("utimes", &full))?;
                out.symlinks += 1;
            }
            EntryType::Link => {
                let target = link_name
                    .ok_or_else(|| err(format!("{shown_entry}: hard link without target")))?;
                let shown_target = String::from_utf8_lossy(&target).into_owned();
                let trel = clean_entry(&target).map_err(|_| {
                    err(format!("hard link {shown_entry:?} target {shown_target:?} is outside extraction root"))
                })?;
                if trel.is_empty() {
                    return Err(err(format!(
                        "archive hardlink {shown_entry:?} targets extraction root"
                    )));
                }
                let tres = resolve_in(dest, root, trel, false).map_err(|_| {
                    err(format!(
                        "hard link {shown_entry:?}: cannot resolve {shown_target:?}"
                    ))
                })?;
                let mut tfull = root.to_vec();
                tfull.extend(tres.iter().cloned());
                let Some((tleaf, tparent)) = tfull.split_last() else {
                    return Err(err(format!(
                        "archive hardlink {shown_entry:?} targets extraction root"
                    )));
                };
                let Walked::Dir(tp) =
                    walk_dir(dest.upper(), tparent).map_err(ioe_at("open", &tfull))?
                else {
                    return Err(err(format!(
                        "hard link {shown_entry:?}: target {shown_target:?} is not in this archive"
                    )));
                };
                linkat(tp.as_fd(), tleaf.as_os_str(), up, name, AtFlags::empty()).map_err(|e| {
                    err(format!(
                        "hard link {shown_entry:?} to {shown_target:?}: {e}"
                    ))
                })?;
                out.hardlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let kind = match ty {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                mknodat(
                    up,
                    name,
                    kind,
                    Mode::from_bits_truncate(0o600),
                    makedev(device.0.into(), device.1.into()),
                )
                .map_err(io_at("mknod", &full))?;
                fchownat(up, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(io_at("chown", &full))?;
                fchmodat(
                    up,
                    name,
                    Mode::from_bits_truncate(mode),
                    FchmodatFlags::FollowSymlink,
                )
                .map_err(io_at("chmod", &full))?;
                utimensat(up, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
                    .map_err(io_at("utimes", &full))?;
                out.special += 1;
            }
            other => {
                return Err(err(format!(
                    "unsupported tar entry {shown_entry:?} type {other:?}"
                )));
            }
        }
    }
    for (full, atime, mtime) in dirs.iter().rev() {
        let Some((leaf, parent)) = full.split_last() else {
            continue;
        };
        if let Walked::Dir(p) = walk_dir(dest.upper(), parent).map_err(ioe_at("open", full))? {
            utimensat(
                p.as_fd(),
                leaf.as_os_str(),
                atime,
                mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(io_at("utimes", full))?;
        }
    }
    Ok(())
}

/// A numeric header field: an empty one (all NULs or spaces) is 0, as Go's
/// `archive/tar` reads it; anything else must parse.
fn number(field: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if field.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(e),
    }
}

/// Resolves an entry path inside the extraction root (symlinks followed
/// as if the root were `/`).
fn resolve_in(
    dest: &Dest,
    root: &[OsString],
    rel: Comps,
    follow_last: bool,
) -> Result<Comps, ResolveError> {
    fsx::resolve(rel, follow_last, &mut |c| {
        let mut p = root.to_vec();
        p.extend(c.iter().cloned());
        dest.lookup(&p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert!(clean_entry(b"../x").is_err());
        assert!(clean_entry(b"a/../../x").is_err());
        assert_eq!(
            clean_entry(b"/a/./b/").ok().map(|c| fsx::rel(&c)),
            Some("a/b".into())
        );
        assert_eq!(clean_entry(b"./").ok().map(|c| c.len()), Some(0));
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time("12.5"), Some(TimeSpec::new(12, 500_000_000)));
        assert_eq!(pax_time("7"), Some(TimeSpec::new(7, 0)));
    }
}
