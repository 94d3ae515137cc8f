//! Progress of a repair run, on stderr: a bar with objects per second and the time left on a
//! terminal (indicatif draws nothing elsewhere), a log line every few seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Summary;

const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: ProgressBar,
    terminal: bool,
    started: Instant,
    last_log: std::cell::Cell<Instant>,
}

impl Progress {
    /// `folders`: the hour folders the run will read.
    pub fn new(command: &str, folders: usize) -> Self {
        let bar = ProgressBar::new(folders as u64);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{command} [{{bar:30}}] {{pos}}/{{len}} hour folders, {{msg}}, {{eta}} left"
            ))
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        let now = Instant::now();
        Progress {
            bar,
            terminal: std::io::stderr().is_terminal(),
            started: now,
            last_log: std::cell::Cell::new(now),
        }
    }

    /// Objects per second, once a run has lasted long enough for the figure to mean something.
    fn rate(&self, summary: &Summary) -> Option<f64> {
        let seconds = self.started.elapsed().as_secs_f64();
        (seconds >= 1.0).then(|| (summary.objects as f64 / seconds).round())
    }

    pub fn folder_done(&self, summary: &Summary) {
        self.bar.inc(1);
        let rate = self.rate(summary);
        let per_second = rate.map_or(String::new(), |r| format!(", {r:.0} objects/s"));
        self.bar
            .set_message(format!("{} objects{per_second}", summary.objects));
        if !self.terminal && self.last_log.get().elapsed() >= LOG_EVERY {
            self.last_log.set(Instant::now());
            tracing::info!(
                folders_done = self.bar.position(),
                folders = self.bar.length().unwrap_or(0),
                objects = summary.objects,
                examined = summary.examined,
                landed = summary.landed,
                failed = summary.failed,
                objects_per_second = rate,
                "repair in progress"
            );
        }
    }

    pub fn finish(&self, summary: &Summary) {
        self.bar.finish_and_clear();
        tracing::info!(
            objects = summary.objects,
            seconds = self.started.elapsed().as_secs_f64().round(),
            objects_per_second = self.rate(summary),
            "repair done"
        );
    }
}
