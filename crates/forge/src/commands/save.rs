//! `forge save [-o FILE] [--format docker-archive|oci-archive|oci-dir] IMAGE...`.
//!
//! docker-archive is the default, as `docker save` writes it. A repository name without a
//! tag saves every tag of that repository (docker's rule); an id saves the image unnamed.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use forge_oci::Reference;
use forge_store::{images::resolve_in, Matched, SaveFormat, SaveImage, Store};

use super::human::{fail, open_store, source_date_epoch};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// `docker save`'s format (the default)
    DockerArchive,
    /// A tar of an OCI image layout
    OciArchive,
    /// An OCI image layout directory (needs -o)
    OciDir,
}

#[derive(clap::Args)]
pub struct Args {
    /// Write to a file (a directory for oci-dir) instead of standard output
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "docker-archive")]
    format: Format,
    /// Images to save (names or ids)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// What `args` name, each under the names to write.
fn select(store: &Store, wanted: &[String]) -> Result<Vec<SaveImage>, ExitCode> {
    let list = store.images().map_err(fail)?;
    let mut out: Vec<SaveImage> = Vec::new();
    let mut add = |image: &forge_store::ImageRecord, name: Option<Reference>| match out
        .iter_mut()
        .find(|s| s.image.target.digest() == image.target.digest())
    {
        Some(s) => s.names.extend(name.filter(|n| !s.names.contains(n))),
        None => out.push(SaveImage {
            image: image.clone(),
            names: name.into_iter().collect(),
        }),
    };
    for w in wanted {
        // A bare repository name: every tag of it.
        if let Ok(r) = Reference::parse_without_default_tag(w) {
            if r.tag().is_none() && r.digest().is_none() {
                let repo = r.repository();
                let mut any = false;
                for image in &list.images {
                    for n in image.names.iter().filter(|n| n.repository() == repo) {
                        add(image, Some(n.clone()));
                        any = true;
                    }
                }
                if any {
                    continue;
                }
            }
        }
        match resolve_in(&list.images, w) {
            Ok(r) => match r.matched {
                Matched::Name(n) => add(&r.image, Some(n)),
                Matched::Id | Matched::Digest(_) => add(&r.image, None),
            },
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(out)
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let images = match select(&store, &args.images) {
        Ok(i) => i,
        Err(code) => return Ok(code),
    };
    let mtime = source_date_epoch().and_then(|t| u64::try_from(t).ok());
    let format = match args.format {
        Format::DockerArchive => SaveFormat::DockerArchive,
        Format::OciArchive => SaveFormat::OciArchive,
        Format::OciDir => {
            let Some(dir) = &args.output else {
                return Ok(fail("--format oci-dir needs -o DIRECTORY"));
            };
            return Ok(match store.save_dir(&images, dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("saving to {}: {e}", dir.display())),
            });
        }
    };
    let written = write_archive(args.output.as_deref(), "saving", |w| {
        store
            .save(&images, format, w, mtime)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    Ok(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    })
}

/// Writes an archive as `docker save` and `docker export` do: to `-o PATH`
/// (written next to it, fsynced and renamed, so a failure leaves no half
/// archive under the name asked for), else to standard output, refused when
/// that is a terminal. Errors read `VERB to PATH: why`.
pub fn write_archive(
    output: Option<&std::path::Path>,
    verb: &str,
    write: impl FnOnce(&mut dyn io::Write) -> Result<(), String>,
) -> Result<(), String> {
    match output {
        Some(path) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            let tmp = tempfile_in(dir.map_or_else(|| PathBuf::from("."), PathBuf::from), path);
            let result = File::create(&tmp)
                .map_err(|e| format!("creating {}: {e}", tmp.display()))
                .and_then(|file| {
                    let mut w = BufWriter::with_capacity(256 * 1024, file);
                    write(&mut w)?;
                    let file = w.into_inner().map_err(|e| e.error().to_string())?;
                    file.sync_all().map_err(|e| e.to_string())?;
                    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
                });
            result.map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("{verb} to {}: {e}", path.display())
            })
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                        .to_owned(),
                );
            }
            let mut w = BufWriter::with_capacity(256 * 1024, stdout.lock());
            write(&mut w)
                .and_then(|()| w.flush().map_err(|e| e.to_string()))
                .map_err(|e| format!("{verb}: {e}"))
        }
    }
}

fn tempfile_in(dir: PathBuf, path: &std::path::Path) -> PathBuf {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    dir.join(format!(".{base}.forge-tmp-{}", std::process::id()))
}
