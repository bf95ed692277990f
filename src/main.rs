use clap::{Parser, Subcommand};
use xttsd::config::LogFormat;

#[derive(Parser)]
#[command(
    name = "xttsd",
    version,
    about = "XTTS v2 voices for Asterisk over AudioSocket and FastAGI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(xttsd::serve::Args),
    /// Synthesize text to an audio file.
    Say(xttsd::say::Args),
    /// Call a running daemon as Asterisk would and record what comes back.
    Call(xttsd::client::Args),
    /// Check the configuration, model, voices, language data, spool directory, ports and device.
    Check(xttsd::check::Args),
    /// Load-test the daemon in-process: N concurrent calls over AudioSocket, latency and throughput.
    Bench(xttsd::bench::Args),
    /// Render a prompt file into an Asterisk sound-file set.
    Render(xttsd::prompts::Args),
}

/// Logs to stderr: coloured only on a terminal (journald and log files get plain text), or
/// one JSON object per line for log shippers.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The daemon's own log format; a config that does not load is reported by `serve` itself.
    let format = match &cli.command {
        Command::Serve(args) => xttsd::config::Config::from_file(&args.config)
            .map(|c| c.daemon.log_format)
            .unwrap_or(LogFormat::Text),
        _ => LogFormat::Text,
    };
    init_logging(format);
    let result = match cli.command {
        Command::Serve(args) => xttsd::serve::run(args),
        Command::Say(args) => xttsd::say::run(args),
        Command::Call(args) => xttsd::client::run(args),
        Command::Bench(args) => xttsd::bench::run(args),
        Command::Check(args) => xttsd::check::run(args),
        Command::Render(args) => xttsd::prompts::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xttsd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
