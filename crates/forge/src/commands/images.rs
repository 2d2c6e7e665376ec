//! `forge images` / `forge image ls`: docker's columns, flags and JSON.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use forge_oci::Reference;
use forge_store::ImageRecord;

use super::format::{label_matches, Filters, Format};
use super::human::{self, created_at, created_since, fail, image_size, open_store, table};

#[derive(clap::Args)]
pub struct Args {
    /// Show all images (forge has no intermediate images, so the same as the default)
    #[arg(short = 'a', long)]
    all: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided (dangling, label, reference, before, since)
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: `table`, `json`, `table TEMPLATE` or a Go template (`{{.Repository}}`)
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (and tag); `*` and `?` match as in docker
    #[arg(value_name = "REPOSITORY[:TAG]")]
    filter: Option<String>,
}

/// One row: an image under one of its names (or `<none>`).
struct Row<'a> {
    image: &'a ImageRecord,
    repository: String,
    tag: String,
    size: u64,
}

/// What each field is called in a table header (docker's).
const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let _ = args.all;
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let list = match store.images() {
        Ok(l) => l,
        Err(e) => return Ok(fail(e)),
    };
    for b in &list.broken {
        let name = b
            .name
            .as_ref()
            .map(Reference::familiar)
            .unwrap_or_else(|| b.descriptor.digest().to_string());
        eprintln!("WARNING: skipping image {name}: {}", b.error);
    }
    let filters = match Filters::parse(
        &args.filters,
        &["dangling", "label", "reference", "before", "since"],
    ) {
        Ok(f) => f,
        Err(e) => return Ok(fail(e)),
    };
    let mut patterns = Vec::new();
    for p in args.filter.iter().chain(filters.get("reference")) {
        match Pattern::parse(p) {
            Ok(p) => patterns.push(p),
            Err(e) => return Ok(fail(e)),
        }
    }
    // before= / since=: relative to when the named image was created.
    let mut bounds = Vec::new();
    for (key, newer) in [("before", false), ("since", true)] {
        for name in filters.get(key) {
            match forge_store::images::resolve_in(&list.images, name) {
                Ok(r) => bounds.push((r.image.created_unix(), newer)),
                Err(e) => return Ok(fail(e)),
            }
        }
    }
    let dangling = match filters.get("dangling").last().map(String::as_str) {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(v) => return Ok(fail(format!("invalid filter 'dangling={v}'"))),
    };
    let mut rows: Vec<Row<'_>> = Vec::new();
    for image in &list.images {
        let labels = image
            .config
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let created = image.created_unix();
        if !filters.allows("label", |l| label_matches(l, &labels))
            || !bounds
                .iter()
                .all(|&(t, newer)| if newer { created > t } else { created < t })
            || dangling.is_some_and(|d| d != image.names.is_empty())
        {
            continue;
        }
        let size = store.image_size(image);
        if image.names.is_empty() {
            if patterns.is_empty() {
                rows.push(Row {
                    image,
                    repository: "<none>".into(),
                    tag: "<none>".into(),
                    size,
                });
            }
            continue;
        }
        for n in &image.names {
            if !patterns.is_empty() && !patterns.iter().any(|p| p.matches(n)) {
                continue;
            }
            rows.push(Row {
                image,
                repository: n.familiar_name(),
                tag: n.tag().unwrap_or("<none>").to_string(),
                size,
            });
        }
    }
    // Newest first, as docker sorts.
    rows.sort_by(|a, b| {
        b.image
            .created_unix()
            .cmp(&a.image.created_unix())
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
    });

    let id = |r: &Row<'_>| {
        if args.no_trunc {
            r.image.id.to_string()
        } else {
            r.image.id.short_id().to_string()
        }
    };
    let digest = |r: &Row<'_>| r.image.target_digest().to_string();
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for r in &rows {
            writeln!(out, "{}", id(r))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let format = Format::parse(args.format.as_deref());
    if format == Format::Table(None) {
        let mut t = vec![];
        let mut header = vec!["REPOSITORY".to_string(), "TAG".into()];
        if args.digests {
            header.push("DIGEST".into());
        }
        header.extend(["IMAGE ID".into(), "CREATED".into(), "SIZE".into()]);
        t.push(header);
        for r in &rows {
            let mut row = vec![r.repository.clone(), r.tag.clone()];
            if args.digests {
                row.push(digest(r));
            }
            row.extend([
                id(r),
                created_since(r.image.created_unix()),
                image_size(r.size),
            ]);
            t.push(row);
        }
        out.write_all(table(&t).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "Containers": "N/A",
                "CreatedAt": created_at(r.image.created_unix()),
                "CreatedSince": created_since(r.image.created_unix()),
                "Digest": digest(r),
                "ID": id(r),
                "Repository": r.repository,
                "SharedSize": "N/A",
                "Size": image_size(r.size),
                "Tag": r.tag,
                "UniqueSize": "N/A",
                "VirtualSize": human::human_size(r.size),
            })
        })
        .collect();
    match format.render(&values, &[], HEADERS) {
        Ok(text) => out.write_all(text.as_bytes())?,
        Err(e) => return Ok(fail(e)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `REPOSITORY[:TAG]` with docker's glob matching on the familiar name.
struct Pattern {
    repository: String,
    tag: Option<String>,
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        // A tag is after the last ':' that follows the last '/'.
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match s[slash..].rfind(':') {
            Some(i) => (&s[..slash + i], Some(s[slash + i + 1..].to_string())),
            None => (s, None),
        };
        if repository.is_empty() {
            return Err(format!("invalid reference format: {s:?}"));
        }
        // Normalise a plain name the way docker does (`library/app` → `app`).
        let repository = match Reference::parse_without_default_tag(repository) {
            Ok(r) if !repository.contains(['*', '?']) => r.familiar_name(),
            _ => repository.to_string(),
        };
        Ok(Pattern { repository, tag })
    }

    fn matches(&self, r: &Reference) -> bool {
        glob(&self.repository, &r.familiar_name())
            && self
                .tag
                .as_ref()
                .is_none_or(|t| r.tag().is_some_and(|rt| glob(t, rt)))
    }
}

/// `path.Match` without character classes: `*` matches any run of non-`/` characters,
/// `?` one character.
fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && s[0] != '/' && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let r = |s: &str| Reference::parse(s).expect("reference");
        assert!(Pattern::parse("app").expect("p").matches(&r("app:1.0")));
        assert!(Pattern::parse("app:1.0").expect("p").matches(&r("app:1.0")));
        assert!(!Pattern::parse("app:2.0").expect("p").matches(&r("app:1.0")));
        assert!(Pattern::parse("ap*").expect("p").matches(&r("app:1.0")));
        assert!(!Pattern::parse("ap*")
            .expect("p")
            .matches(&r("user/app:1.0")));
        assert!(Pattern::parse("user/*:1.?")
            .expect("p")
            .matches(&r("user/app:1.0")));
        assert!(Pattern::parse("localhost:5000/a/b")
            .expect("p")
            .matches(&r("localhost:5000/a/b:t")));
        assert!(Pattern::parse("library/app").expect("p").matches(&r("app")));
    }
}
