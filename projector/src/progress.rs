//! What a one-shot command (`rebuild`, `verify`, `copy-log`) shows while it
//! works, on stderr: on a terminal a live bar per phase (count, rate, time
//! left, redrawn as it moves); otherwise, for logs and CI, a plain line at
//! each phase and one every ten seconds within it, never a flood.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::rebuild::Progress;

/// How often the plain lines come within a phase.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// Progress on stderr, as a bar on a terminal and as plain lines elsewhere.
pub struct Reporter {
    what: &'static str,
    started: Instant,
    phase: String,
    phase_started: Instant,
    /// Shown after the count (copy-log's position, to resume from).
    note: String,
    out: Output,
}

enum Output {
    Bar(Option<ProgressBar>),
    Plain {
        sink: Box<dyn Write + Send>,
        every: Duration,
        last: Option<Instant>,
    },
}

impl Reporter {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn stderr(what: &'static str) -> Self {
        if std::io::stderr().is_terminal() {
            Self::with(what, Output::Bar(None))
        } else {
            Self::plain(what, Box::new(std::io::stderr()), PLAIN_EVERY)
        }
    }

    /// Plain lines into `sink`, one per phase and at most one per `every`
    /// within it.
    pub fn plain(what: &'static str, sink: Box<dyn Write + Send>, every: Duration) -> Self {
        Self::with(
            what,
            Output::Plain {
                sink,
                every,
                last: None,
            },
        )
    }

    fn with(what: &'static str, out: Output) -> Self {
        Self {
            what,
            started: Instant::now(),
            phase: String::new(),
            phase_started: Instant::now(),
            note: String::new(),
            out,
        }
    }

    /// A new phase: the last one's bar stays on screen as it ended.
    pub fn phase(&mut self, phase: &str) {
        self.end_bar();
        self.phase = phase.to_owned();
        self.phase_started = Instant::now();
        self.note.clear();
        let line = format!(
            "{}: {phase} ({:.1} s)",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
        match &mut self.out {
            Output::Bar(_) => eprintln!("{line}"),
            Output::Plain { sink, last, .. } => {
                *last = None;
                let _ = writeln!(sink, "{line}");
                let _ = sink.flush();
            }
        }
    }

    /// What to show after the count from now on in this phase.
    pub fn note(&mut self, note: String) {
        if let Output::Bar(Some(bar)) = &self.out {
            bar.set_message(format!("({note})"));
        }
        self.note = note;
    }

    /// `done` of about `total` `unit`s of the current phase.
    pub fn advance(&mut self, done: u64, total: Option<u64>, unit: &'static str) {
        match &mut self.out {
            Output::Bar(bar) => {
                let bar = bar.get_or_insert_with(|| {
                    let bar = new_bar(self.what, unit, total);
                    if !self.note.is_empty() {
                        bar.set_message(format!("({})", self.note));
                    }
                    bar
                });
                if let Some(total) = total {
                    bar.set_length(total.max(done));
                }
                bar.set_position(done);
            }
            Output::Plain { sink, every, last } => {
                if last.is_some_and(|t| t.elapsed() < *every) {
                    return;
                }
                *last = Some(Instant::now());
                let line = plain_line(
                    self.what,
                    &self.phase,
                    done,
                    total,
                    unit,
                    self.phase_started.elapsed(),
                );
                if self.note.is_empty() {
                    let _ = writeln!(sink, "{line}");
                } else {
                    let _ = writeln!(sink, "{line}, {}", self.note);
                }
                let _ = sink.flush();
            }
        }
    }

    /// Leaves the last bar drawn where it ended, before the command's answer.
    pub fn finish(&mut self) {
        self.end_bar();
    }

    fn end_bar(&mut self) {
        if let Output::Bar(bar) = &mut self.out
            && let Some(bar) = bar.take()
        {
            bar.finish();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.end_bar();
    }
}

impl Progress for Reporter {
    fn phase(&mut self, phase: &str) {
        Reporter::phase(self, phase);
    }

    fn replayed(&mut self, done: u64, total: Option<u64>) {
        self.advance(done, total, "events");
    }

    fn loaded(&mut self, rows: u64, total: u64) {
        self.advance(rows, Some(total), "rows");
    }
}

fn new_bar(what: &'static str, unit: &'static str, total: Option<u64>) -> ProgressBar {
    let template = match total {
        Some(_) => format!(
            "{{prefix}}: [{{wide_bar}}] {{human_pos}}/~{{human_len}} {unit}, {{per_sec:0}}, {{eta}} left {{msg}}"
        ),
        None => {
            format!(
                "{{prefix}}: {{spinner}} {{human_pos}} {unit}, {{per_sec:0}}, {{elapsed}} {{msg}}"
            )
        }
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(5))
        .with_style(style)
        .with_prefix(what);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One plain progress line: what, phase, count, rate over the phase so
/// far, and the time left at that rate when the total is known.
pub fn plain_line(
    what: &str,
    phase: &str,
    done: u64,
    total: Option<u64>,
    unit: &str,
    elapsed: Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    #[allow(clippy::cast_precision_loss)]
    let rate = done as f64 / secs;
    let of = match total {
        Some(total) => format!("{done} of ~{total} {unit}"),
        None => format!("{done} {unit}"),
    };
    let left = match total {
        Some(total) if total > done && rate > 0.0 => {
            #[allow(clippy::cast_precision_loss)]
            let left = (total - done) as f64 / rate;
            format!(", ~{left:.0} s left")
        }
        _ => String::new(),
    };
    format!("{what}: {phase}: {of}, {rate:.0} {unit}/s{left}")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[test]
    fn a_plain_line_has_count_total_rate_and_time_left() {
        let line = plain_line(
            "rebuild",
            "replaying the log",
            100_000,
            Some(300_000),
            "events",
            Duration::from_secs(4),
        );
        assert_eq!(
            line,
            "rebuild: replaying the log: 100000 of ~300000 events, 25000 events/s, ~8 s left"
        );
    }

    #[test]
    fn without_a_total_a_plain_line_has_no_time_left() {
        let line = plain_line(
            "copy-log",
            "copying",
            10,
            None,
            "events",
            Duration::from_secs(2),
        );
        assert_eq!(line, "copy-log: copying: 10 events, 5 events/s");
        let done = plain_line("verify", "x", 7, Some(7), "events", Duration::from_secs(1));
        assert_eq!(done, "verify: x: 7 of ~7 events, 7 events/s");
    }

    #[test]
    fn plain_output_is_one_line_per_phase_and_at_most_one_per_interval() {
        let sink = Captured::default();
        let mut reporter =
            Reporter::plain("rebuild", Box::new(sink.clone()), Duration::from_secs(3600));
        reporter.phase("replaying the log");
        for done in 0..1000 {
            reporter.replayed(done, Some(1000));
        }
        reporter.phase("loading rows (COPY)");
        reporter.loaded(5, 10);
        reporter.loaded(10, 10);
        let lines = sink.lines();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].starts_with("rebuild: replaying the log ("),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("rebuild: replaying the log: 0 of ~1000 events, "),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("rebuild: loading rows (COPY) ("),
            "{lines:?}"
        );
        assert!(
            lines[3].starts_with("rebuild: loading rows (COPY): 5 of ~10 rows, "),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.contains('\r') || l.contains('\x1b')));
    }

    #[test]
    fn a_note_follows_the_count_until_the_next_phase() {
        let sink = Captured::default();
        let mut reporter = Reporter::plain("copy-log", Box::new(sink.clone()), Duration::ZERO);
        reporter.phase("copying");
        reporter.note("at 12/0".to_owned());
        reporter.advance(3, None, "events");
        reporter.phase("done");
        reporter.advance(3, None, "events");
        let lines = sink.lines();
        assert!(
            lines[1].starts_with("copy-log: copying: 3 events, "),
            "{lines:?}"
        );
        assert!(lines[1].ends_with(", at 12/0"), "{lines:?}");
        assert!(!lines[3].contains("at 12/0"), "{lines:?}");
    }

    #[test]
    fn plain_lines_keep_coming_while_a_phase_runs() {
        let sink = Captured::default();
        let mut reporter = Reporter::plain("verify", Box::new(sink.clone()), Duration::ZERO);
        reporter.phase("replaying the log");
        reporter.replayed(10, None);
        reporter.replayed(20, None);
        let lines = sink.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[2].starts_with("verify: replaying the log: 20 events, "));
    }
}
