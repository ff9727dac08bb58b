//! Test-only pause points, so the fault-injection tests (`tests/faults_*.rs`) can SIGKILL a
//! backup or restore at a known moment instead of racing it.
//!
//! With `DBKEEPER_TEST_PAUSE_BEFORE=<point>` in the environment, [`pause`] at that point prints
//! `dbkeeper: test pause before <point>` on stderr and sleeps for a minute; the test kills the
//! process meanwhile. Unset (always, outside the tests) it does nothing. A pause only ever
//! delays: it cannot change what dbkeeper writes or reports.
//!
//! Points: `manifest` (backup: every data member written, MANIFEST.json and COMMIT not yet),
//! `post-data` (PostgreSQL restore: data loaded, indexes and constraints not yet built),
//! `mongo-indexes` (MongoDB restore: a collection's documents inserted, its indexes not built).

/// The environment variable naming the point to pause at.
pub const PAUSE_ENV: &str = "DBKEEPER_TEST_PAUSE_BEFORE";

/// How long a requested pause lasts: far longer than any test needs to kill the process.
const PAUSE: std::time::Duration = std::time::Duration::from_secs(60);

/// Sleeps (blocking the calling thread) when `point` is the one requested in [`PAUSE_ENV`].
pub fn pause(point: &str) {
    if std::env::var(PAUSE_ENV).is_ok_and(|p| p == point) {
        eprintln!("dbkeeper: test pause before {point}");
        std::thread::sleep(PAUSE);
    }
}
