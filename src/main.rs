//! The `tenantry` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tenantry::config::Config;
use tenantry::serve::Node;

/// Tenantry: self-hosted Workers for Platforms.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy the config's Workers into the data directory and serve them.
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "tenantry.toml")]
        config: PathBuf,
    },
    /// Validate a config file (and compile its Workers) without serving.
    Check {
        #[arg(long, short, default_value = "tenantry.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;
    let node = Node::start(&config)?;
    // Tests and scripts read this line to learn the port (the config may ask for port 0).
    println!("tenantry listening on http://{}", node.local_addr());
    let _ = stop_rx.recv();
    tracing::info!("shutting down");
    node.shutdown();
    Ok(())
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let report = tenantry::deploy::check(&config)?;
    println!(
        "{}: ok ({} namespaces, {} workers compiled, {} routes)",
        path.display(),
        config.namespaces.len(),
        report.deployed,
        config.routes.len()
    );
    Ok(())
}
