//! `forge login [-u USER] [-p PASS | --password-stdin] [SERVER]`: checks the credentials
//! against the registry's `/v2/` and stores them in docker's `config.json` format.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;

use forge_registry::Credentials;

use super::human::fail;
use super::pull::client;

#[derive(clap::Args)]
pub struct Args {
    /// Username
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// The registry (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

/// The registry host a `login`/`logout` argument names (`https://h:5000/` → `h:5000`).
pub fn server_host(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let host = server_host(args.server.as_deref());
    if args.password.is_some() && args.password_stdin {
        return Ok(fail(
            "--password and --password-stdin are mutually exclusive",
        ));
    }
    if args.password_stdin && args.username.is_none() {
        return Ok(fail("Must provide --username with --password-stdin"));
    }
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let interactive = std::io::stdin().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if interactive => prompt("Username: ")?,
        None => {
            return Ok(fail(
                "Cannot perform an interactive login from a non TTY device",
            ))
        }
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        p
    } else if interactive {
        prompt_hidden("Password: ")?
    } else {
        return Ok(fail(
            "Cannot perform an interactive login from a non TTY device",
        ));
    };
    if username.is_empty() {
        return Ok(fail("Username is required"));
    }
    if password.is_empty() {
        return Ok(fail("Password is required"));
    }
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Ok(fail(format!("{e:#}"))),
    };
    let creds = Credentials { username, password };
    if let Err(e) = client.verify_login(&host, &creds) {
        return Ok(fail(format!("login to {host}: {e}")));
    }
    if let Err(e) = client.credentials().set(&host, &creds) {
        return Ok(fail(e));
    }
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.",
        client.credentials().path().display()
    );
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

fn prompt(label: &str) -> anyhow::Result<String> {
    print!("{label}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Reads a line with the terminal's echo off.
fn prompt_hidden(label: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let line = prompt(label);
    tcsetattr(&stdin, SetArg::TCSANOW, &saved)?;
    println!();
    line
}
