//! `prunec`: the command-line driver. Reads a model through a frontend, runs the passes
//! named on the command line (verifying the IR after each), and prints what they found;
//! `generate`, `bench` and `synth` are tools around it.

use std::process::ExitCode;

use clap::Parser;

mod activations;
mod bench;
mod cli;
mod device;
mod evaluate;
mod generate;
mod memory;
mod output;
mod pipeline;
mod plot;
mod progress;
mod recover;
mod report;
mod run;
mod safety;
mod session;
mod study;
mod synth;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match safety::negative_count(&e) {
            Some(msg) => {
                eprintln!("error: {msg}");
                return ExitCode::FAILURE;
            }
            None => e.exit(),
        },
    };
    safety::install_signal_cleanup();
    let result = safety::check_args(&cli).and_then(|()| match &cli.command {
        Some(Command::Synth(args)) => synth::run(args),
        Some(Command::Generate(args)) => generate::generate(args),
        Some(Command::Bench(args)) => bench::bench(args),
        Some(Command::Sweep(args)) => study::sweep(args),
        Some(Command::Sensitivity(args)) => study::sensitivity(args),
        None => run::run(&cli.run),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // a signal removed the outputs under this run: its handler prints and exits 128 + signal
        Err(_) if prunec_ir::output::interrupted() => loop {
            std::thread::park();
        },
        Err(e) => {
            eprintln!("error: {}", safety::printable(&error_chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `: `-separated, leaving out a cause whose text the message before
/// it already ends with (errors that print their source, as `path: reason`, would repeat it).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
