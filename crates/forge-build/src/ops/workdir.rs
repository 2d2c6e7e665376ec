//! WORKDIR's directory: made in the step's layer as BuildKit's file op does
//! `MkdirAll` on it inside the root filesystem.

use std::ffi::OsString;
use std::path::Path;

use super::copy::CopyError;
use super::dest::{Dest, DestError};
use super::fsx::Node;

/// Makes `path` (absolute, as written) and its missing parents in `upper`, over the
/// root filesystem `view`: each prefix of the path as written, cleaned (`/a/../b` makes
/// `/a`, then `/b`, as Go's `MkdirAll` does), symlinks followed inside the root. New
/// directories are 0755 and owned by `user` (resolved in the view's `/etc` files);
/// directories of the view on the way are recreated with their metadata (the one
/// that gains an entry keeps its new mtime, see [`Dest::finish`]). When the
/// whole path was already a directory, nothing was made: the layer stays empty.
pub(crate) fn make_workdir(
    view: Option<&Path>,
    upper: &Path,
    path: &str,
    user: &str,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", upper.display());
    let dest_err = |e| CopyError::from(e).to_string();
    let mut dest = Dest::open(upper, view).map_err(io)?;
    let owner = match (user.is_empty(), dest.lower()) {
        (false, Some(root)) => {
            let u = forge_sandbox::users::resolve_user_in(root, user).map_err(|e| e.to_string())?;
            (u.uid, u.gid)
        }
        _ => (0, 0),
    };
    let mut prefixes: Vec<Vec<OsString>> = Vec::new();
    let mut stack: Vec<OsString> = Vec::new();
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            stack.pop();
        } else {
            stack.push(comp.into());
            prefixes.push(stack.clone());
        }
    }
    let Some(last) = prefixes.last() else {
        return Ok(());
    };
    let whole = dest.resolve(last.clone(), true).map_err(dest_err)?;
    if matches!(dest.lookup(&whole).map_err(io)?, Node::Dir(_)) {
        return Ok(());
    }
    for prefix in prefixes {
        let resolved = dest.resolve(prefix, true).map_err(dest_err)?;
        dest.mkdir_p(&resolved, owner).map_err(|e| match e {
            DestError::NotADirectory(p) => format!("mkdir {path}: {p} is not a directory"),
            e => dest_err(e),
        })?;
    }
    dest.finish().map_err(dest_err)
}
