//! `avfuse`: train, evaluate and serve robust audio-visual classifiers.

mod av_digits_cmd;
mod cli;
mod commands;
mod doctor;
mod media_cmds;
mod serve_cmds;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the whole cause chain, outermost first.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
