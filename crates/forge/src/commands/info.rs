//! `forge info`: the store, the configuration in force and the registry settings, in
//! `docker info`'s layout.

use std::path::PathBuf;
use std::process::ExitCode;

use forge_registry::RegistryConfig;

use super::human::{fail, open_store, store_root};
use super::pull::config_env;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(root: Option<PathBuf>, _args: Args) -> anyhow::Result<ExitCode> {
    let env = config_env();
    let config = match RegistryConfig::load(&env) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    let root_dir = store_root(root.clone());
    // Reporting must not create a store where none is.
    let images = if root_dir.join("index.json").is_file() {
        match open_store(root) {
            Ok(s) => s.images().map(|l| l.images.len()).unwrap_or(0),
            Err(code) => return Ok(code),
        }
    } else {
        0
    };
    println!("Client:");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!();
    println!("Server:");
    println!(" Images: {images}");
    println!(" Storage Driver: overlay2");
    println!(" Forge Root Dir: {}", root_dir.display());
    println!(
        " Config File: {}{}",
        config.path.display(),
        if config.exists { "" } else { " (not present)" }
    );
    println!(" Credentials File: {}", env.credentials_file().display());
    println!(" Architecture: {}", std::env::consts::ARCH);
    println!(" Insecure Registries:");
    for r in config.insecure_display() {
        println!("  {r}");
    }
    if !config.mirrors.is_empty() {
        println!(" Registry Mirrors:");
        for m in &config.mirrors {
            println!("  {m}/");
        }
    }
    Ok(ExitCode::SUCCESS)
}
