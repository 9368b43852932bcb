//! The first sync's progress: a bar per table pair and direction on a
//! terminal (rows copied of the table's rows, rate, time left), plain log lines
//! elsewhere.
//!
//! Log lines and bars share stderr: the log writer ([`StderrAboveBars`])
//! lifts the bars while it writes, so neither garbles the other.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tracing::{info, Level};

use tandem_connectors::RowCount;

use crate::config::Side;

static BARS: OnceLock<MultiProgress> = OnceLock::new();

fn bars() -> &'static MultiProgress {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Runs `write` with the progress bars (if any) lifted off the terminal.
fn suspend<R>(write: impl FnOnce() -> R) -> R {
    match BARS.get() {
        Some(bars) => bars.suspend(write),
        None => write(),
    }
}

/// The log's writer: stderr, with the progress bars lifted while a line is
/// written.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrAboveBars;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrAboveBars {
    type Writer = StderrAboveBars;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for StderrAboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        suspend(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The progress of copying one pair's rows from one side.
pub struct CopyProgress {
    bar: Option<ProgressBar>,
    pair: String,
    origin: Side,
    /// The rows expected; grows when the copy passes it.
    total: std::cell::Cell<u64>,
    /// Whether `total` was counted (a small table) or is the catalog's
    /// estimate (which the log says).
    counted: bool,
}

impl CopyProgress {
    /// Starts showing the copy of `pair` from `origin` (its `table`), of
    /// `total` rows,
    /// counted or estimated (see
    /// [`tandem_connectors::Connector::estimate_rows`]): a bar when stderr
    /// is a terminal and info lines are logged.
    pub fn start(pair: &str, origin: Side, table: &str, count: RowCount) -> CopyProgress {
        let (total, counted) = (count.rows, count.exact);
        let show = std::io::stderr().is_terminal() && tracing::enabled!(Level::INFO);
        let bar = show.then(|| {
            let bar = bars().add(ProgressBar::new(total));
            let template = if counted {
                "{prefix} [{bar:30}] {human_pos}/{human_len} rows, {rate} rows/s, ETA {eta}"
            } else {
                "{prefix} [{bar:30}] {human_pos}/~{human_len} rows, {rate} rows/s, ETA {eta}"
            };
            let style = ProgressStyle::with_template(template)
                .expect("a valid template")
                .with_key(
                    "rate",
                    |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                        let _ = write!(out, "{:.0}", state.per_sec());
                    },
                )
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("first sync {pair} {origin}->{}", origin.other()));
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        if counted {
            info!(pair = %pair, from = %origin, table, rows = total, "first sync: copying");
        } else {
            info!(pair = %pair, from = %origin, table, rows_about = total, "first sync: copying (the row count is the catalog's estimate)");
        }
        CopyProgress {
            bar,
            pair: pair.to_owned(),
            origin,
            total: std::cell::Cell::new(total),
            counted,
        }
    }

    /// `copied` rows so far (the total grows when the copy passes it:
    /// rows written since it was counted, or a low estimate).
    pub fn update(&self, copied: u64) {
        let total = self.total.get().max(copied);
        self.total.set(total);
        match &self.bar {
            Some(bar) => {
                if bar.length().is_some_and(|len| total > len) {
                    bar.set_length(total);
                }
                bar.set_position(copied);
            }
            None if self.counted => {
                info!(pair = %self.pair, from = %self.origin, copied, of = total, "first sync: progress")
            }
            None => {
                info!(pair = %self.pair, from = %self.origin, copied, of_about = total, "first sync: progress")
            }
        }
    }
}

impl Drop for CopyProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            bars().remove(&bar);
        }
    }
}
