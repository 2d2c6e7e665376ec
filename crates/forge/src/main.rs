//! The `forge` command line: flags parsed by clap, work done by the library
//! crates, results printed here, errors mapped to docker's exit codes (125 for
//! forge's own failures).

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "forge",
    version,
    about = "Build, store and run OCI container images from Dockerfiles"
)]
struct Cli {
    /// The store directory (default: $FORGE_ROOT, else /var/lib/forge for root,
    /// $XDG_DATA_HOME/forge otherwise)
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile
    Build(Box<commands::build::Args>),
    /// Print a Dockerfile's parse tree (BuildKit's dump format, or JSON)
    Parse(commands::parse::Args),
    /// Lint a Dockerfile with BuildKit's build checks
    Check(commands::check::Args),
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::import::Args),
    /// Load an image from a tar archive or STDIN
    Load(commands::load::Args),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(commands::save::Args),
    /// List images
    Images(commands::images::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::tag::Args),
    /// Remove one or more images
    Rmi(commands::rmi::Args),
    /// Display detailed information on one or more images
    Inspect(commands::inspect::Args),
    /// Show the history of an image
    History(commands::history::Args),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage forge
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(commands::images::Args),
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::import::Args),
    /// Load an image from a tar archive or STDIN
    Load(commands::load::Args),
    /// Save one or more images to a tar archive
    Save(commands::save::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::tag::Args),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(commands::rmi::Args),
    /// Display detailed information on one or more images
    Inspect(commands::inspect::Args),
    /// Show the history of an image
    History(commands::history::Args),
    /// Remove unused images and collect garbage in the store
    Prune(commands::prune::Args),
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Show forge disk usage
    Df(commands::df::Args),
}

/// Exit status for failures of forge itself, as docker's.
pub const EXIT_FORGE_ERROR: u8 = 125;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => commands::build::run(cli.root, *args),
        Command::Parse(args) => commands::parse::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Import(args) | Command::Image(ImageCommand::Import(args)) => {
            commands::import::run(cli.root, args)
        }
        Command::Load(args) | Command::Image(ImageCommand::Load(args)) => {
            commands::load::run(cli.root, args)
        }
        Command::Save(args) | Command::Image(ImageCommand::Save(args)) => {
            commands::save::run(cli.root, args)
        }
        Command::Images(args) | Command::Image(ImageCommand::Ls(args)) => {
            commands::images::run(cli.root, args)
        }
        Command::Tag(args) | Command::Image(ImageCommand::Tag(args)) => {
            commands::tag::run(cli.root, args)
        }
        Command::Rmi(args) | Command::Image(ImageCommand::Rm(args)) => {
            commands::rmi::run(cli.root, args)
        }
        Command::Inspect(args) | Command::Image(ImageCommand::Inspect(args)) => {
            commands::inspect::run(cli.root, args)
        }
        Command::History(args) | Command::Image(ImageCommand::History(args)) => {
            commands::history::run(cli.root, args)
        }
        Command::Image(ImageCommand::Prune(args)) => commands::prune::run(cli.root, args),
        Command::System(SystemCommand::Df(args)) => commands::df::run(cli.root, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`forge parse | head`) is not a failure.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("forge: {err:#}");
            ExitCode::from(EXIT_FORGE_ERROR)
        }
    }
}
