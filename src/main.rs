//! `prunec`: the command-line driver. Reads a model through a frontend, runs the passes
//! named on the command line (verifying the IR after each), and prints what they found;
//! `generate`, `bench` and `synth` are tools around it.

use std::process::ExitCode;

use clap::Parser;

mod activations;
mod alloc;
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
    session::tune_allocator();
    let mut cli = match Cli::try_parse() {
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
    quiet_collective_panics();
    // burn-communication installs a logger printing to stdout unless one is set: stdout is
    // prunec's (IR dumps, JSON rows)
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    let settled = if cli.command.is_none() { cli.run.settle_parallel() } else { Ok(()) };
    let result = settled.and_then(|()| safety::check_args(&cli)).and_then(|()| match &cli.command {
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

/// burn-collective panics in its own threads where it loses a peer (a node that died): the run
/// reports that as an error of its own, so those panics are one note each, not a backtrace.
fn quiet_collective_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let at = info.location().map(|l| (l.file().to_string(), l.line()));
        match at {
            Some((file, line)) if prunec_backends::runtime::is_collective_panic(&file) => {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let file = file.rsplit_once("/src/").map_or(file.as_str(), |(_, f)| f).to_string();
                eprintln!("note: burn-collective ({file}:{line}): {}", safety::printable(&msg));
            }
            _ => default(info),
        }
    }));
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
