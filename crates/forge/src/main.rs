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
    /// Download an image from a registry
    Pull(commands::pull::Args),
    /// Upload an image to a registry
    Push(commands::push::Args),
    /// Log in to a registry
    Login(commands::login::Args),
    /// Log out from a registry
    Logout(commands::logout::Args),
    /// Search a registry's catalog for images
    Search(commands::search::Args),
    /// Display system-wide information
    Info(commands::info::Args),
    /// Create and run a new container from an image
    Run(Box<commands::container::RunArgs>),
    /// Create a new container
    Create(Box<commands::container::CreateArgs>),
    /// Start one or more stopped containers
    Start(commands::container::StartArgs),
    /// Stop one or more running containers
    Stop(commands::container::StopArgs),
    /// Restart one or more containers
    Restart(commands::container::StopArgs),
    /// Kill one or more running containers
    Kill(commands::container::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(commands::container::NamesArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::container::PortArgs),
    /// Rename a container
    Rename(commands::container::RenameArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(commands::container::CpArgs),
    /// Display the running processes of a container
    Top(commands::container::TopArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commands::container::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(commands::container::ExportArgs),
    /// Remove one or more containers
    Rm(commands::container::RmArgs),
    /// List containers
    Ps(commands::container::PsArgs),
    /// Fetch the logs of a container
    Logs(commands::container::LogsArgs),
    /// Execute a command in a running container
    Exec(commands::container::ExecArgs),
    /// Pause all processes within one or more containers
    Pause(commands::container::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(commands::container::NamesArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(commands::container::StatsArgs),
    /// Create a new image from a container's changes
    Commit(commands::container::CommitArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// Hold a detached container (started by forge itself)
    #[command(hide = true, name = "container-monitor")]
    ContainerMonitor { id: String },
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
    /// Download an image from a registry
    Pull(commands::pull::Args),
    /// Upload an image to a registry
    Push(commands::push::Args),
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Create and run a new container from an image
    Run(Box<commands::container::RunArgs>),
    /// Create a new container
    Create(Box<commands::container::CreateArgs>),
    /// Start one or more stopped containers
    Start(commands::container::StartArgs),
    /// Stop one or more running containers
    Stop(commands::container::StopArgs),
    /// Restart one or more containers
    Restart(commands::container::StopArgs),
    /// Kill one or more running containers
    Kill(commands::container::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(commands::container::NamesArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::container::PortArgs),
    /// Rename a container
    Rename(commands::container::RenameArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(commands::container::CpArgs),
    /// Display the running processes of a container
    Top(commands::container::TopArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commands::container::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(commands::container::ExportArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(commands::container::RmArgs),
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(commands::container::PsArgs),
    /// Fetch the logs of a container
    Logs(commands::container::LogsArgs),
    /// Execute a command in a running container
    Exec(commands::container::ExecArgs),
    /// Pause all processes within one or more containers
    Pause(commands::container::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(commands::container::NamesArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(commands::container::StatsArgs),
    /// Create a new image from a container's changes
    Commit(commands::container::CommitArgs),
    /// Display detailed information on one or more containers
    Inspect(commands::inspect::Args),
    /// Remove all stopped containers
    Prune(commands::container::PruneArgs),
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Show forge disk usage
    Df(commands::df::Args),
    /// Display system-wide information
    Info(commands::info::Args),
}

/// Exit status for failures of forge itself, as docker's.
pub const EXIT_FORGE_ERROR: u8 = 125;

fn main() -> ExitCode {
    // docker's CLI exits 125 on a usage error; help and version are not errors.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_FORGE_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
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
        Command::Pull(args) | Command::Image(ImageCommand::Pull(args)) => {
            commands::pull::run(cli.root, args)
        }
        Command::Push(args) | Command::Image(ImageCommand::Push(args)) => {
            commands::push::run(cli.root, args)
        }
        Command::Login(args) => commands::login::run(args),
        Command::Logout(args) => commands::logout::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Info(args) | Command::System(SystemCommand::Info(args)) => {
            commands::info::run(cli.root, args)
        }
        Command::Run(args) | Command::Container(ContainerCommand::Run(args)) => {
            commands::container::run(cli.root, *args)
        }
        Command::Create(args) | Command::Container(ContainerCommand::Create(args)) => {
            commands::container::create(cli.root, *args)
        }
        Command::Start(args) | Command::Container(ContainerCommand::Start(args)) => {
            commands::container::start(cli.root, args)
        }
        Command::Stop(args) | Command::Container(ContainerCommand::Stop(args)) => {
            commands::container::stop(cli.root, args)
        }
        Command::Restart(args) | Command::Container(ContainerCommand::Restart(args)) => {
            commands::container::restart(cli.root, args)
        }
        Command::Kill(args) | Command::Container(ContainerCommand::Kill(args)) => {
            commands::container::kill(cli.root, args)
        }
        Command::Wait(args) | Command::Container(ContainerCommand::Wait(args)) => {
            commands::container::wait(cli.root, args)
        }
        Command::Port(args) | Command::Container(ContainerCommand::Port(args)) => {
            commands::container::port(cli.root, args)
        }
        Command::Rename(args) | Command::Container(ContainerCommand::Rename(args)) => {
            commands::container::rename(cli.root, args)
        }
        Command::Cp(args) | Command::Container(ContainerCommand::Cp(args)) => {
            commands::container::cp(cli.root, args)
        }
        Command::Top(args) | Command::Container(ContainerCommand::Top(args)) => {
            commands::container::top(cli.root, args)
        }
        Command::Diff(args) | Command::Container(ContainerCommand::Diff(args)) => {
            commands::container::diff(cli.root, args)
        }
        Command::Export(args) | Command::Container(ContainerCommand::Export(args)) => {
            commands::container::export(cli.root, args)
        }
        Command::Rm(args) | Command::Container(ContainerCommand::Rm(args)) => {
            commands::container::rm(cli.root, args)
        }
        Command::Ps(args) | Command::Container(ContainerCommand::Ls(args)) => {
            commands::container::ps(cli.root, args)
        }
        Command::Logs(args) | Command::Container(ContainerCommand::Logs(args)) => {
            commands::container::logs(cli.root, args)
        }
        Command::Exec(args) | Command::Container(ContainerCommand::Exec(args)) => {
            commands::container::exec(cli.root, args)
        }
        Command::Pause(args) | Command::Container(ContainerCommand::Pause(args)) => {
            commands::container::pause(cli.root, args, true)
        }
        Command::Unpause(args) | Command::Container(ContainerCommand::Unpause(args)) => {
            commands::container::pause(cli.root, args, false)
        }
        Command::Stats(args) | Command::Container(ContainerCommand::Stats(args)) => {
            commands::container::stats(cli.root, args)
        }
        Command::Commit(args) | Command::Container(ContainerCommand::Commit(args)) => {
            commands::container::commit(cli.root, args)
        }
        Command::Container(ContainerCommand::Inspect(args)) => {
            commands::inspect::run(cli.root, args)
        }
        Command::Container(ContainerCommand::Prune(args)) => {
            commands::container::prune(cli.root, args)
        }
        Command::Volume(cmd) => commands::volume::run(cli.root, cmd),
        Command::ContainerMonitor { id } => commands::container::monitor(cli.root, id),
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
