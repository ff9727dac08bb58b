//! The CLI's progress sinks: an indicatif bar on a terminal, NDJSON events with `--json-events`,
//! and nothing at all for cron (stderr not a terminal): one summary line per run is enough there.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use dbkeeper::progress::{self, ProgressSink};

/// Chooses and installs the sink for this run.
pub fn install(json_events: bool, quiet: bool) {
    if json_events {
        progress::install(Box::new(NdjsonEvents::default()));
    } else if !quiet && std::io::stderr().is_terminal() {
        progress::install(Box::new(Bars::default()));
    }
}

#[derive(Default)]
struct Totals {
    records: AtomicU64,
    raw_bytes: AtomicU64,
}

/// `--json-events`: one JSON object per line on stderr, so stdout keeps the single result
/// document. Events: `start` (with exact totals when known), `progress` (after every chunk, i.e.
/// every few MiB) and `finish`.
#[derive(Default)]
struct NdjsonEvents {
    totals: Totals,
    phase: Mutex<Option<Phase>>,
}

struct Phase {
    name: String,
    started: Instant,
    total_records: Option<u64>,
    total_raw_bytes: Option<u64>,
}

impl NdjsonEvents {
    fn emit(&self, event: &str) {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let Some(phase) = phase.as_ref() else {
            return;
        };
        let line = serde_json::json!({
            "event": event,
            "phase": phase.name,
            "records": self.totals.records.load(Ordering::Relaxed),
            "raw_bytes": self.totals.raw_bytes.load(Ordering::Relaxed),
            "total_records": phase.total_records,
            "total_raw_bytes": phase.total_raw_bytes,
            "elapsed": (phase.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

impl ProgressSink for NdjsonEvents {
    fn start(&self, phase: &str, total_records: Option<u64>, total_raw_bytes: Option<u64>) {
        self.totals.records.store(0, Ordering::Relaxed);
        self.totals.raw_bytes.store(0, Ordering::Relaxed);
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = Some(Phase {
            name: phase.to_string(),
            started: Instant::now(),
            total_records,
            total_raw_bytes,
        });
        self.emit("start");
    }

    fn chunk(&self, records: u64, raw_bytes: u64) {
        self.totals.records.fetch_add(records, Ordering::Relaxed);
        self.totals
            .raw_bytes
            .fetch_add(raw_bytes, Ordering::Relaxed);
        self.emit("progress");
    }

    fn finish(&self) {
        self.emit("finish");
    }
}

/// A progress bar over uncompressed bytes (exact when the archive's manifest gives the total),
/// with rows/documents in the message; a spinner when the total is unknown (backup).
#[derive(Default)]
struct Bars {
    records: AtomicU64,
    /// `u64::MAX` when unknown.
    total_records: AtomicU64,
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressSink for Bars {
    fn start(&self, phase: &str, total_records: Option<u64>, total_raw_bytes: Option<u64>) {
        self.records.store(0, Ordering::Relaxed);
        self.total_records
            .store(total_records.unwrap_or(u64::MAX), Ordering::Relaxed);
        let bar = match total_raw_bytes {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {msg} ({eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{prefix:>8} {spinner} {bytes} {msg} {elapsed}")
                    .expect("valid template"),
            ),
        };
        bar.set_prefix(phase.to_string());
        bar.set_message(match total_records {
            Some(total) => format!("0/{total} rows"),
            None => "0 rows".to_string(),
        });
        bar.enable_steady_tick(Duration::from_millis(200));
        let previous = self
            .bar
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(bar.clone());
        if let Some(previous) = previous {
            previous.finish_and_clear();
        }
    }

    fn chunk(&self, records: u64, raw_bytes: u64) {
        let done = self.records.fetch_add(records, Ordering::Relaxed) + records;
        let total = self.total_records.load(Ordering::Relaxed);
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.inc(raw_bytes);
            bar.set_message(if total == u64::MAX {
                format!("{done} rows")
            } else {
                format!("{done}/{total} rows")
            });
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}
