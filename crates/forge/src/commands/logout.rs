//! `forge logout [SERVER]`: removes the stored credentials of a registry.

use std::process::ExitCode;

use super::human::fail;
use super::login::server_host;
use super::pull::client;

#[derive(clap::Args)]
pub struct Args {
    /// The registry (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let host = server_host(args.server.as_deref());
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Ok(fail(format!("{e:#}"))),
    };
    match client.credentials().remove(&host) {
        Ok(true) => println!("Removing login credentials for {host}"),
        Ok(false) => println!("Not logged in to {host}"),
        Err(e) => return Ok(fail(e)),
    }
    Ok(ExitCode::SUCCESS)
}
