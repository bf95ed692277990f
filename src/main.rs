use clap::{Parser, Subcommand};

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
    /// Load-test the daemon in-process: N concurrent calls over AudioSocket, latency and throughput.
    Bench(xttsd::bench::Args),
    /// Render a prompt file into an Asterisk sound-file set.
    Render(xttsd::prompts::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => xttsd::serve::run(args),
        Command::Say(args) => xttsd::say::run(args),
        Command::Call(args) => xttsd::client::run(args),
        Command::Bench(args) => xttsd::bench::run(args),
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
