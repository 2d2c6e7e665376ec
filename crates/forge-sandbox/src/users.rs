//! Resolving docker's `USER` / `--user` strings (`user`, `uid`,
//! `user:group`, `uid:gid`, …) against a rootfs's `/etc/passwd` and
//! `/etc/group`, with the semantics of moby's `user.GetExecUser`:
//!
//! - a name must exist in passwd; a number need not (then gid stays 0);
//! - an explicit group replaces the user's primary group and no
//!   supplementary groups are added;
//! - without one, the supplementary groups are those listing the user by
//!   name in `/etc/group`.
//!
//! The sandbox itself only takes numeric ids; build and run call this first.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

/// The ids and home directory a `USER` string resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From passwd; `/` when the user has no entry (docker's default `HOME`).
    pub home: PathBuf,
}

/// Why a `USER` string could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("invalid user spec {spec:?}: {reason}")]
    Invalid { spec: String, reason: &'static str },
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        source: io::Error,
    },
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        Some(PasswdEntry {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        Some(GroupEntry {
            name: f.first()?,
            gid: f.get(2)?.parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

/// Resolve `spec` given the contents of passwd and group (`None`: the file
/// does not exist, which only numeric ids survive).
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<User, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None => (spec, ""),
    };
    if group_arg.contains(':') {
        return Err(UserError::Invalid {
            spec: spec.to_owned(),
            reason: "more than one ':'",
        });
    }
    let uid_arg = user_arg.parse::<u32>().ok();
    let gid_arg = group_arg.parse::<u32>().ok();
    let mut user = User {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: PathBuf::from("/"),
    };

    let matched = passwd.and_then(|text| {
        passwd_entries(text).find(|e| match (user_arg, uid_arg) {
            ("", _) => e.uid == 0,
            (_, Some(uid)) => e.uid == uid,
            (name, None) => e.name == name,
        })
    });
    let matched_name = match matched {
        Some(e) => {
            user.uid = e.uid;
            user.gid = e.gid;
            if !e.home.is_empty() {
                user.home = PathBuf::from(e.home);
            }
            Some(e.name.to_owned())
        }
        None if user_arg.is_empty() => None,
        None => match uid_arg {
            Some(uid) => {
                user.uid = uid;
                None
            }
            None => return Err(UserError::NoSuchUser(user_arg.to_owned())),
        },
    };

    if !group_arg.is_empty() {
        let found = group.and_then(|text| {
            group_entries(text).find(|g| match gid_arg {
                Some(gid) => g.gid == gid,
                None => g.name == group_arg,
            })
        });
        user.gid = match (found, gid_arg) {
            (Some(g), _) => g.gid,
            (None, Some(gid)) => gid,
            (None, None) => return Err(UserError::NoSuchGroup(group_arg.to_owned())),
        };
    } else if let (Some(name), Some(text)) = (&matched_name, group) {
        user.additional_gids = group_entries(text)
            .filter(|g| g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect();
    }
    Ok(user)
}

/// Read `path` (e.g. `/etc/passwd`) inside the tree at `root`, resolving
/// symlinks as if `root` were `/`. `Ok(None)` when it does not exist.
pub fn read_in_root(root: BorrowedFd<'_>, path: &'static str) -> Result<Option<String>, UserError> {
    let rel = path.trim_start_matches('/');
    let c = std::ffi::CString::new(rel).map_err(|_| UserError::Invalid {
        spec: path.to_owned(),
        reason: "NUL in path",
    })?;
    match crate::sys::open_in_root(root.as_raw_fd(), &c, libc::O_RDONLY) {
        Ok(fd) => {
            let mut s = String::new();
            std::fs::File::from(fd)
                .read_to_string(&mut s)
                .map_err(|source| UserError::Read { path, source })?;
            Ok(Some(s))
        }
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(UserError::Read {
            path,
            source: e.into(),
        }),
    }
}

/// [`resolve_user`] against `/etc/passwd` and `/etc/group` of the rootfs
/// at `root` (a directory descriptor, e.g. of a [`RootFsView`](crate::RootFsView)).
pub fn resolve_user_in(root: BorrowedFd<'_>, spec: &str) -> Result<User, UserError> {
    let passwd = read_in_root(root, "/etc/passwd")?;
    let group = read_in_root(root, "/etc/group")?;
    resolve_user(spec, passwd.as_deref(), group.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:alice,bob\naudio:x:29:alice\nnobody:x:65534:\nalice:x:1000:\nstaff:x:50:\n";

    fn r(spec: &str) -> Result<User, UserError> {
        resolve_user(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_and_numbers() {
        let u = r("alice").expect("alice");
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 1000, vec![10, 29])
        );
        assert_eq!(u.home, PathBuf::from("/home/alice"));
        let u = r("1000").expect("1000");
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![10, 29]);
        let u = r("").expect("empty");
        assert_eq!(
            (u.uid, u.gid, u.home.clone()),
            (0, 0, PathBuf::from("/root"))
        );
        let u = r("nobody").expect("nobody");
        assert_eq!((u.uid, u.gid), (65534, 65534));
    }

    #[test]
    fn explicit_groups_replace_supplementary_ones() {
        let u = r("alice:staff").expect("alice:staff");
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 50, 0));
        let u = r("alice:4242").expect("numeric group");
        assert_eq!(u.gid, 4242);
        assert!(matches!(r("alice:nogroup"), Err(UserError::NoSuchGroup(_))));
    }

    #[test]
    fn unknown_numeric_ids_pass_through() {
        let u = resolve_user("1234:5678", None, None).expect("numeric");
        assert_eq!((u.uid, u.gid, u.home), (1234, 5678, PathBuf::from("/")));
        let u = r("4321").expect("unknown uid");
        assert_eq!((u.uid, u.gid), (4321, 0));
        assert!(matches!(r("mallory"), Err(UserError::NoSuchUser(_))));
        assert!(matches!(
            resolve_user("mallory", None, None),
            Err(UserError::NoSuchUser(_))
        ));
    }
}
