//! The `sediment` command line.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use sediment::cli::cluster::ClusterCommand;
use sediment::cli::group::GroupCommand;
use sediment::cli::topic::TopicCommand;
use sediment::cli::{CliError, Globals};
use sediment::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "sediment",
    version,
    about = "A Kafka-compatible broker whose history lives in object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: a complete single-node broker under ./data.
    Serve(Box<Overrides>),
    /// Create, list, describe, change and delete topics on a running broker.
    Topic {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// List, describe (members, offsets, lag), delete and seek consumer groups.
    Group {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Write lines of a file or of standard input to a topic, one record each.
    Produce {
        #[command(flatten)]
        globals: Globals,
        #[command(flatten)]
        args: sediment::cli::produce::ProduceArgs,
    },
    /// Print a topic's records, from the beginning, the end, an offset or a time.
    Consume {
        #[command(flatten)]
        globals: Globals,
        #[command(flatten)]
        args: sediment::cli::consume::ConsumeArgs,
    },
    /// What the archive holds, read from the bucket directly (no broker needed).
    Archive {
        #[command(flatten)]
        args: sediment::cli::archive::ArchiveArgs,
        #[command(subcommand)]
        command: sediment::cli::archive::ArchiveCommand,
    },
    /// Print a shell completion script: `source <(sediment completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Brokers, controller and partition health of a running cluster.
    Cluster {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A client command logs only what goes wrong; a broker installs its
    // log once its config is read.
    if !matches!(cli.command, Command::Serve(_)) {
        if let Err(e) = sediment::telemetry::init("warn", None) {
            eprintln!("sediment: {e}");
        }
    }
    match cli.command {
        Command::Topic { globals, command } => client_command(sediment::cli::topic::run(&globals, command)),
        Command::Cluster { globals, command } => client_command(sediment::cli::cluster::run(&globals, command)),
        Command::Group { globals, command } => client_command(sediment::cli::group::run(&globals, command)),
        Command::Archive { args, command } => client_command(sediment::cli::archive::run(&args, command)),
        Command::Produce { globals, args } => client_command(sediment::cli::produce::run(&globals, args)),
        Command::Consume { globals, args } => client_command(sediment::cli::consume::run(&globals, args)),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sediment", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Serve(overrides) => serve(&overrides),
    }
}

/// Runs a broker until a shutdown signal, then sends the spans still queued.
fn serve(overrides: &Overrides) -> ExitCode {
    let config = match Config::load(overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sediment: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match sediment::telemetry::init("info", Some(&config)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sediment: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sediment: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(sediment::node::run(config, shutdown_signal()));
    drop(runtime);
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sediment: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a client subcommand on a small runtime: success, or its error as
/// one line on stderr and its exit code.
fn client_command(command: impl std::future::Future<Output = Result<(), CliError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sediment: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.line());
            ExitCode::from(e.exit_code())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
