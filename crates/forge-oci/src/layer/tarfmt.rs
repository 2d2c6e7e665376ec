//! Exact tar headers as Go's `archive/tar` writes them for docker and containerd.
//!
//! USTAR when every field fits (long names split into prefix/name), otherwise a PAX
//! extended header carrying the fields that do not fit, plus `SCHILY.xattr.<name>` records
//! for extended attributes. No uname/gname, no atime/ctime: only what a layer means.
//! We write the blocks ourselves (the tar crate's `Header` encodes the fields) so that a
//! short read of a source file can be told apart from a failed write of the output.

use std::io::{self, Write};

use tar::{EntryType, Header};

pub(crate) const BLOCK: usize = 512;
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
/// Largest value of an 8-byte octal field (mode, uid, gid, devmajor, devminor).
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal field (size, mtime).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;

/// Everything one tar entry says.
pub(crate) struct EntrySpec<'a> {
    /// The full name; directories end in `/`.
    pub name: &'a [u8],
    pub kind: EntryType,
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    /// Symlink target or hardlink target name.
    pub link: Option<&'a [u8]>,
    /// Device major/minor for character and block devices.
    pub dev: Option<(u64, u64)>,
    /// Extended attributes, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Go's `splitUSTARPath`: the split at the last `/` that fits both fields.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut length = name.len();
    if length <= NAME_LEN || !name.is_ascii() {
        return None;
    }
    if length > PREFIX_LEN + 1 {
        length = PREFIX_LEN + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&c| c == b'/')?;
    let nlen = name.len() - i - 1;
    if i == 0 || nlen > NAME_LEN || nlen == 0 || i > PREFIX_LEN {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // The length prefix counts itself: grow the digit count until it is consistent.
    let rest = 3 + key.len() + value.len(); // ' ', '=', '\n'
    let mut digits = 1;
    while (rest + digits).to_string().len() > digits {
        digits += 1;
    }
    out.extend_from_slice((rest + digits).to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Writes the header block(s) for `e` (a PAX header first when needed). The caller then
/// writes `e.size` bytes of data and [`write_padding`].
pub(crate) fn write_header<W: Write>(w: &mut W, e: &EntrySpec<'_>) -> io::Result<()> {
    let mut h = Header::new_ustar();
    // (key, value) PAX records; sorted by key below, as Go writes them.
    let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();

    {
        let ustar = h
            .as_ustar_mut()
            .expect("Header::new_ustar always has the ustar layout");
        if e.name.len() <= NAME_LEN && e.name.is_ascii() {
            copy_field(&mut ustar.name, e.name);
        } else if let Some((prefix, rest)) = split_ustar(e.name) {
            copy_field(&mut ustar.prefix, prefix);
            copy_field(&mut ustar.name, rest);
        } else {
            // Truncated in the USTAR field, complete in the PAX record (what Go does).
            copy_field(&mut ustar.name, e.name);
            pax.push((b"path".to_vec(), e.name.to_vec()));
        }
    }
    if let Some(link) = e.link {
        copy_field(&mut h.as_old_mut().linkname, link);
        if link.len() > NAME_LEN || !link.is_ascii() {
            pax.push((b"linkpath".to_vec(), link.to_vec()));
        }
    }
    h.set_entry_type(e.kind);
    h.set_mode(e.mode & 0o7777);
    let mut numeric = |key: &str, v: u64, max: u64| -> u64 {
        if v > max {
            pax.push((key.as_bytes().to_vec(), v.to_string().into_bytes()));
            0
        } else {
            v
        }
    };
    let uid = numeric("uid", e.uid, MAX_OCTAL_8);
    let gid = numeric("gid", e.gid, MAX_OCTAL_8);
    let size = numeric("size", e.size, MAX_OCTAL_12);
    let mtime = numeric("mtime", e.mtime, MAX_OCTAL_12);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(mtime);
    if let Some((major, minor)) = e.dev {
        // Linux device numbers are 32-bit; anything beyond an octal field is clamped
        // rather than encoded in a way readers disagree on.
        h.set_device_major(u32::try_from(major.min(MAX_OCTAL_8)).unwrap_or(0))?;
        h.set_device_minor(u32::try_from(minor.min(MAX_OCTAL_8)).unwrap_or(0))?;
    } else {
        // Go leaves the device fields as zeros ("0000000\0") for other types; the tar crate
        // leaves them as NULs. Either is read as 0; we match Go for byte-compatibility.
        h.set_device_major(0)?;
        h.set_device_minor(0)?;
    }
    for (name, value) in e.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        pax.push((key, value.clone()));
    }
    h.set_cksum();

    if !pax.is_empty() {
        pax.sort();
        let mut data = Vec::new();
        for (k, v) in &pax {
            pax_record(&mut data, k, v);
        }
        write_pax_header(w, e.name, &data)?;
    }
    w.write_all(h.as_bytes())
}

/// The `x` header and its records. Named `<dir>/PaxHeaders.0/<base>` as Go names it.
fn write_pax_header<W: Write>(w: &mut W, name: &[u8], data: &[u8]) -> io::Result<()> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|&c| c == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut xname = dir.to_vec();
    xname.extend_from_slice(b"PaxHeaders.0/");
    xname.extend_from_slice(base);
    let mut h = Header::new_ustar();
    copy_field(
        &mut h
            .as_ustar_mut()
            .expect("Header::new_ustar always has the ustar layout")
            .name,
        &xname,
    );
    h.set_entry_type(EntryType::XHeader);
    h.set_mode(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    w.write_all(h.as_bytes())?;
    w.write_all(data)?;
    write_padding(w, data.len() as u64)
}

/// Zero bytes that round `size` up to a whole block.
pub(crate) fn write_padding<W: Write>(w: &mut W, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// The end-of-archive marker: two zero blocks.
pub(crate) fn write_end<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(&[0u8; 2 * BLOCK])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", b"a");
        assert_eq!(out, b"9 path=a\n");
        out.clear();
        // 3 + 4 + 93 = 100 -> 3 digits -> 103
        pax_record(&mut out, b"path", &[b'x'; 93]);
        assert!(out.starts_with(b"103 path="));
        assert_eq!(out.len(), 103);
        out.clear();
        // rest = 98: with 1 digit 99 (2 digits) -> 2 digits: 100 (3 digits) -> 101.
        pax_record(&mut out, b"path", &[b'x'; 91]);
        assert_eq!(out.len(), 101);
        assert!(out.starts_with(b"101 "));
    }

    /// Values too big for USTAR fields go to PAX records the tar crate reads back.
    #[test]
    fn big_values_use_pax() {
        let name = format!("dir/{}", "n".repeat(180));
        let link = "l".repeat(150);
        let spec = EntrySpec {
            name: name.as_bytes(),
            kind: EntryType::Symlink,
            mode: 0o777,
            uid: 3_000_000,
            gid: 4_000_000,
            mtime: 5,
            size: 9 << 30,
            link: Some(link.as_bytes()),
            dev: None,
            xattrs: &[(b"user.x".to_vec(), vec![0, 1, 2, 255])],
        };
        let mut out = Vec::new();
        write_header(&mut out, &spec).expect("header");
        let mut ar = tar::Archive::new(&out[..]);
        let mut entries = ar.entries().expect("entries");
        let mut e = entries.next().expect("one entry").expect("valid");
        assert_eq!(e.path_bytes().as_ref(), name.as_bytes());
        assert_eq!(e.link_name_bytes().expect("link").as_ref(), link.as_bytes());
        assert_eq!(e.header().uid().expect("uid"), 3_000_000);
        assert_eq!(e.header().gid().expect("gid"), 4_000_000);
        assert_eq!(e.size(), 9 << 30);
        let pax = e.pax_extensions().expect("pax").expect("some");
        let xattr = pax
            .filter_map(Result::ok)
            .find(|r| r.key() == Ok("SCHILY.xattr.user.x"))
            .expect("xattr record");
        assert_eq!(xattr.value_bytes(), &[0, 1, 2, 255]);
    }

    #[test]
    fn ustar_split_like_go() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let (p, n) = split_ustar(long.as_bytes()).expect("fits prefix+name");
        assert_eq!(p.len(), 120);
        assert_eq!(n.len(), 50);
        assert!(split_ustar("x".repeat(200).as_bytes()).is_none());
        assert!(split_ustar(b"short").is_none());
    }
}
