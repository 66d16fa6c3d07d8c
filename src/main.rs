//! The `pruneview` binary: the command-line twin of the desktop app.

mod cli;

/// mimalloc keeps freed pages for reuse: the forward pass frees and allocates tens of MB per
/// layer, and the system allocator returns them to the OS, so every layer paid page faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader closed the pipe (`pruneview detect ... | head -1`): it has what it wanted.
        Err(e) if cli::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::error_message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
