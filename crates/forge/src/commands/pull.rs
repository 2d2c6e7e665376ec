//! `forge pull NAME[:TAG|@DIGEST]`, with docker's output; and what the registry commands
//! share: the client built from the environment and the per-layer progress display.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forge_oci::{Digest, Reference};
use forge_registry::{
    Client, ConfigEnv, CredentialStore, LayerStatus, PlatformSpec, Progress, RegistryConfig,
};

use super::human::{fail, human_size, open_store};

#[derive(clap::Args)]
pub struct Args {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Blobs downloaded at once
    #[arg(long, default_value_t = forge_registry::PullOptions::default().jobs, hide = true)]
    pub jobs: usize,
    /// Set platform if the image is multi-platform (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// The image
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub name: String,
}

/// Where forge's config and the credentials are, from the environment.
pub fn config_env() -> ConfigEnv {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    ConfigEnv {
        forge_config: var("FORGE_CONFIG"),
        docker_config: var("DOCKER_CONFIG"),
        is_root: nix::unistd::geteuid().is_root(),
        xdg_config_home: var("XDG_CONFIG_HOME"),
        home: var("HOME"),
    }
}

/// The registry client for this environment.
pub fn client() -> anyhow::Result<Client> {
    let env = config_env();
    let config = RegistryConfig::load(&env)?;
    Ok(Client::new(
        config,
        CredentialStore::new(env.credentials_file()),
    ))
}

/// docker's per-layer lines: redrawn in place on a terminal, one line per change of
/// state otherwise (byte counts only on a terminal).
pub struct LayerDisplay {
    /// On stderr instead of stdout (`forge run`'s pull keeps stdout for the container).
    stderr: bool,
    tty: bool,
    quiet: bool,
    hidden: Vec<Digest>,
    state: Mutex<DisplayState>,
}

#[derive(Default)]
struct DisplayState {
    order: Vec<String>,
    lines: HashMap<String, String>,
    drawn: usize,
    last_draw: Option<Instant>,
}

impl LayerDisplay {
    pub fn new(quiet: bool, hidden: Vec<Digest>) -> LayerDisplay {
        LayerDisplay {
            stderr: false,
            tty: std::io::stdout().is_terminal(),
            quiet,
            hidden,
            state: Mutex::new(DisplayState::default()),
        }
    }

    /// The display on stderr.
    pub fn on_stderr(quiet: bool) -> LayerDisplay {
        LayerDisplay {
            stderr: true,
            tty: std::io::stderr().is_terminal(),
            ..LayerDisplay::new(quiet, Vec::new())
        }
    }

    /// Writes `text` whole to the display's stream.
    fn emit(&self, text: &str) {
        let _ = if self.stderr {
            let mut e = std::io::stderr().lock();
            e.write_all(text.as_bytes()).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|()| o.flush())
        };
    }

    /// Draws the final state (a terminal may have skipped the last updates).
    pub fn finish(&self) {
        if self.tty && !self.quiet {
            let mut s = self.lock();
            self.redraw(&mut s);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DisplayState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn redraw(&self, s: &mut DisplayState) {
        let mut text = String::new();
        if s.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", s.drawn));
        }
        for id in &s.order {
            let line = s.lines.get(id).map(String::as_str).unwrap_or("");
            text.push_str(&format!("\x1b[2K{id}: {line}\n"));
        }
        self.emit(&text);
        s.drawn = s.order.len();
        s.last_draw = Some(Instant::now());
    }
}

fn bar(verb: &str, done: u64, total: u64) -> String {
    const WIDTH: usize = 50;
    let filled = if total == 0 {
        WIDTH
    } else {
        ((done.min(total) as f64 / total as f64) * WIDTH as f64) as usize
    };
    let mut b = "=".repeat(filled.saturating_sub(1));
    if filled > 0 {
        b.push(if filled == WIDTH { '=' } else { '>' });
    }
    format!(
        "{verb} [{b:<WIDTH$}]  {}/{}",
        human_size(done),
        human_size(total)
    )
}

impl Progress for LayerDisplay {
    fn layer(&self, digest: &Digest, status: LayerStatus) {
        if self.quiet || self.hidden.contains(digest) {
            return;
        }
        let id = digest.short_id().to_string();
        let (text, transient) = match &status {
            LayerStatus::Waiting => ("Pulling fs layer".to_string(), false),
            LayerStatus::AlreadyExists => ("Already exists".to_string(), false),
            LayerStatus::Downloading { done, total } => (bar("Downloading", *done, *total), true),
            LayerStatus::DownloadComplete => ("Download complete".to_string(), false),
            LayerStatus::Extracting => ("Extracting".to_string(), true),
            LayerStatus::PullComplete => ("Pull complete".to_string(), false),
            LayerStatus::Preparing => ("Preparing".to_string(), false),
            LayerStatus::Pushing { done, total } => (bar("Pushing", *done, *total), true),
            LayerStatus::Retrying { attempt, reason } => {
                (format!("Retrying (attempt {attempt}): {reason}"), false)
            }
            LayerStatus::Pushed => ("Pushed".to_string(), false),
            LayerStatus::Mounted { from } => (format!("Mounted from {from}"), false),
            LayerStatus::LayerAlreadyExists => ("Layer already exists".to_string(), false),
        };
        let mut s = self.lock();
        if !self.tty {
            if !transient {
                self.emit(&format!("{id}: {text}\n"));
            }
            return;
        }
        if !s.lines.contains_key(&id) {
            s.order.push(id.clone());
        }
        s.lines.insert(id, text);
        let due = s
            .last_draw
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if !transient || due {
            self.redraw(&mut s);
        }
    }

    fn note(&self, message: &str) {
        eprintln!("{message}");
    }
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let given = match Reference::parse_without_default_tag(&args.name) {
        Ok(r) => r,
        Err(e) => return Ok(fail(e)),
    };
    let reference = match Reference::parse(&args.name) {
        Ok(r) => r,
        Err(e) => return Ok(fail(e)),
    };
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Ok(fail(format!("{e:#}"))),
    };
    let platform = match args.platform.as_deref().map(PlatformSpec::parse) {
        None => None,
        Some(Some(p)) => Some(p),
        Some(None) => {
            return Ok(fail(format!(
                "invalid platform {:?}: expected os/arch[/variant]",
                args.platform.unwrap_or_default()
            )))
        }
    };
    let opts = forge_registry::PullOptions {
        jobs: args.jobs,
        platform,
    };
    let display = LayerDisplay::new(args.quiet, Vec::new());
    if let Err(e) = pull_reporting(&client, &store, &given, &reference, &opts, &display) {
        return Ok(fail(e));
    }
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}

/// Pulls `reference` (`given` as the user wrote it) with docker's lines around the
/// per-layer ones, on the display's stream: the tag and repository, then the digest and
/// whether anything changed.
pub fn pull_reporting(
    client: &Client,
    store: &forge_store::Store,
    given: &Reference,
    reference: &Reference,
    opts: &forge_registry::PullOptions,
    display: &LayerDisplay,
) -> Result<(), forge_registry::PullError> {
    let say = |line: String| {
        if !display.quiet {
            display.emit(&format!("{line}\n"));
        }
    };
    if given.tag().is_none() && given.digest().is_none() {
        say("Using default tag: latest".to_owned());
    }
    match (reference.tag(), reference.digest()) {
        (_, Some(d)) => say(format!("{}: Pulling from {}", d, reference.path())),
        (Some(t), None) => say(format!("{t}: Pulling from {}", reference.path())),
        (None, None) => {}
    }
    let pulled = forge_registry::pull(client, store, reference, opts, display);
    display.finish();
    let pulled = pulled?;
    let shown = reference.familiar();
    say(format!("Digest: {}", pulled.digest));
    if pulled.changed {
        say(format!("Status: Downloaded newer image for {shown}"));
    } else {
        say(format!("Status: Image is up to date for {shown}"));
    }
    Ok(())
}
