//! The CLI's progress sinks: an indicatif bar on a terminal, NDJSON events with `--json-events`,
//! and nothing at all for cron (stderr not a terminal): one summary line per run is enough there.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use dbkeeper::progress::{self, ProgressSink, Totals};

/// Chooses and installs the sink for this run.
pub fn install(json_events: bool, quiet: bool) {
    if json_events {
        progress::install(Box::new(NdjsonEvents::default()));
    } else if !quiet && std::io::stderr().is_terminal() {
        progress::install(Box::new(Bars::default()));
    }
}

/// What has been processed so far in the current phase.
#[derive(Default)]
struct Done {
    records: AtomicU64,
    raw_bytes: AtomicU64,
}

/// `--json-events`: one JSON object per line on stderr, so stdout keeps the single result
/// document. Events: `start` (with the totals, `totals_exact` false for a backup's estimates),
/// `progress` (after every chunk, i.e. every few MiB), `step` (a part of the phase without
/// chunks, like index builds, named in `step`), `item` and `done` (a table or collection begun
/// and finished, named in `item`) and `finish`. Documented in docs/json.md.
#[derive(Default)]
struct NdjsonEvents {
    done: Done,
    /// Records read but not in a chunk yet.
    read_ahead: std::sync::atomic::AtomicI64,
    phase: Mutex<Option<Phase>>,
}

struct Phase {
    name: String,
    started: Instant,
    totals: Totals,
}

impl NdjsonEvents {
    fn emit(&self, event: &str) {
        self.emit_with(event, serde_json::Map::new());
    }

    fn emit_with(&self, event: &str, extra: serde_json::Map<String, serde_json::Value>) {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let Some(phase) = phase.as_ref() else {
            return;
        };
        let mut line = serde_json::json!({
            "event": event,
            "phase": phase.name,
            "records": self.done.records.load(Ordering::Relaxed),
            "raw_bytes": self.done.raw_bytes.load(Ordering::Relaxed),
            "total_records": phase.totals.records,
            "total_raw_bytes": phase.totals.raw_bytes,
            "totals_exact": phase.totals.exact,
            "elapsed": (phase.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        if let Some(object) = line.as_object_mut() {
            object.extend(extra);
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

impl ProgressSink for NdjsonEvents {
    fn start(&self, phase: &str, totals: Totals) {
        self.done.records.store(0, Ordering::Relaxed);
        self.done.raw_bytes.store(0, Ordering::Relaxed);
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = Some(Phase {
            name: phase.to_string(),
            started: Instant::now(),
            totals,
        });
        self.emit("start");
    }

    fn chunk(&self, records: u64, raw_bytes: u64) {
        self.done.records.fetch_add(records, Ordering::Relaxed);
        self.done.raw_bytes.fetch_add(raw_bytes, Ordering::Relaxed);
        self.emit("progress");
    }

    fn finish(&self) {
        self.emit("finish");
    }

    fn step(&self, step: &str) {
        self.emit_with("step", extra([("step", step.into())]));
    }

    fn reading(&self, delta: i64) {
        let read = self.read_ahead.fetch_add(delta, Ordering::Relaxed) + delta;
        if delta > 0 {
            self.emit_with("reading", extra([("read_ahead", read.into())]));
        }
    }

    fn item(&self, name: &str) {
        self.emit_with("item", extra([("item", name.into())]));
    }

    fn item_done(&self, verb: &str, name: &str, records: u64) {
        self.emit_with(
            "done",
            extra([
                ("item", name.into()),
                ("verb", verb.into()),
                ("item_records", records.into()),
            ]),
        );
    }
}

fn extra<const N: usize>(
    fields: [(&str, serde_json::Value); N],
) -> serde_json::Map<String, serde_json::Value> {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// What a terminal bar measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Uncompressed bytes against the manifest's exact total (restore, verify); rows in the
    /// message.
    Bytes,
    /// Rows/documents against the databases' estimate (backup); bytes in the message.
    EstimatedRecords,
    /// No total: a spinner counting up.
    Unknown,
}

/// A progress bar on stderr, redrawn at most five times a second.
#[derive(Default)]
struct Bars {
    state: Mutex<Option<BarState>>,
}

struct BarState {
    bar: ProgressBar,
    unit: Unit,
    records: u64,
    raw_bytes: u64,
    total_records: Option<u64>,
    /// The table or collection being worked on.
    current: Option<String>,
    /// Records read but not in a chunk yet.
    read_ahead: i64,
}

impl BarState {
    fn message(&self) -> String {
        let counts = self.counts();
        match &self.current {
            Some(name) if counts.is_empty() => name.clone(),
            Some(name) => format!("{counts} {name}"),
            None => counts,
        }
    }

    fn counts(&self) -> String {
        match self.unit {
            Unit::Bytes => match self.total_records {
                Some(total) => format!("{}/{total} rows", self.records),
                None => format!("{} rows", self.records),
            },
            Unit::EstimatedRecords => format!("rows, {}", HumanBytes(self.raw_bytes)),
            // A phase without chunks (checking the archive, comparing) has no count to show.
            Unit::Unknown if self.records == 0 && self.raw_bytes == 0 => String::new(),
            Unit::Unknown => format!("{} rows, {}", self.records, HumanBytes(self.raw_bytes)),
        }
    }
}

fn bar_for(unit: Unit, totals: Totals) -> ProgressBar {
    let (length, template) = match unit {
        Unit::Bytes => (
            totals.raw_bytes,
            "{prefix:>8} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {msg} ({eta})",
        ),
        Unit::EstimatedRecords => (
            totals.records,
            "{prefix:>8} [{bar:30}] {percent:>3}% {human_pos}/~{human_len} {msg} ({eta})",
        ),
        Unit::Unknown => (None, "{prefix:>8} {spinner} {msg} {elapsed}"),
    };
    ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr()).with_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    )
}

impl ProgressSink for Bars {
    fn start(&self, phase: &str, totals: Totals) {
        let unit = match totals {
            Totals {
                raw_bytes: Some(_),
                exact: true,
                ..
            } => Unit::Bytes,
            Totals {
                records: Some(_), ..
            } => Unit::EstimatedRecords,
            _ => Unit::Unknown,
        };
        let bar = bar_for(unit, totals);
        bar.set_prefix(phase.to_string());
        let state = BarState {
            bar: bar.clone(),
            unit,
            records: 0,
            raw_bytes: 0,
            total_records: totals.records,
            current: None,
            read_ahead: 0,
        };
        bar.set_message(state.message());
        bar.enable_steady_tick(Duration::from_millis(200));
        let previous = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(state);
        if let Some(previous) = previous {
            previous.bar.finish_and_clear();
        }
    }

    fn chunk(&self, records: u64, raw_bytes: u64) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = guard.as_mut() else {
            return;
        };
        state.records += records;
        state.raw_bytes += raw_bytes;
        match state.unit {
            Unit::EstimatedRecords => {
                // An estimate can be short: grow the bar rather than overflow it.
                let position = state.records + state.read_ahead.max(0) as u64;
                let length = state.bar.length().unwrap_or(0).max(position);
                state.bar.set_length(length);
                state.bar.set_position(position);
            }
            Unit::Bytes | Unit::Unknown => state.bar.inc(raw_bytes),
        }
        let message = state.message();
        state.bar.set_message(message);
    }

    fn finish(&self) {
        if let Some(state) = self.state.lock().unwrap_or_else(|e| e.into_inner()).take() {
            state.bar.finish_and_clear();
        }
    }

    fn reading(&self, delta: i64) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = guard.as_mut() else {
            return;
        };
        state.read_ahead += delta;
        if state.unit == Unit::EstimatedRecords {
            let position = state.records + state.read_ahead.max(0) as u64;
            let length = state.bar.length().unwrap_or(0).max(position);
            state.bar.set_length(length);
            state.bar.set_position(position);
        }
    }

    fn step(&self, step: &str) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = guard.as_mut() {
            state.bar.set_prefix(step.to_string());
            state.current = None;
            let message = state.message();
            state.bar.set_message(message);
        }
    }

    fn item(&self, name: &str) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = guard.as_mut() {
            state.current = Some(name.to_string());
            let message = state.message();
            state.bar.set_message(message);
        }
    }
}
