//! Progress of long work on stderr: a bar on a terminal; elsewhere (CI logs, pipes) a line
//! at every tenth of the work, with counts and times.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress of one task counted in steps.
pub struct Progress {
    label: String,
    total: usize,
    start: Instant,
    bar: Option<ProgressBar>,
    last_tenth: usize,
}

impl Progress {
    /// Starts reporting `label`, `total` steps of `unit`.
    pub fn new(label: &str, total: usize, unit: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            let template = format!("{label} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed_precise}} eta {{eta}} {{msg}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress { label: label.to_string(), total, start: Instant::now(), bar, last_tenth: 0 }
    }

    /// `done` of the total steps are done; `msg` says something about the latest.
    pub fn update(&mut self, done: usize, msg: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(msg.to_string());
            }
            None => {
                let tenth = (done * 10).checked_div(self.total).unwrap_or(10);
                if tenth > self.last_tenth || done == self.total {
                    self.last_tenth = tenth;
                    eprintln!(
                        "{}: {done}/{} ({:.1} s) {msg}",
                        self.label,
                        self.total,
                        self.start.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    /// Ends the bar (the line mode has already said everything).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
