//! The one V2 pass `restore` and `verify` run on their targets.

use crate::archive::reader::VerifiedArchive;
use crate::config::Settings;
use crate::engine::{self, CompareOptions, Database};
use crate::error::Result;
use crate::verify::TargetCheck;

/// V2 on `targets` in registry order, shown as the `compare` phase (a deep comparison reads
/// every record again and takes as long as the restore's data load).
pub async fn compare(
    archive: &VerifiedArchive,
    targets: &[Box<dyn Database>],
    options: &CompareOptions,
) -> Result<Vec<TargetCheck>> {
    crate::progress::start("compare", crate::progress::Totals::default());
    let checks = compare_each(archive, targets, options).await;
    crate::progress::finish();
    checks
}

async fn compare_each(
    archive: &VerifiedArchive,
    targets: &[Box<dyn Database>],
    options: &CompareOptions,
) -> Result<Vec<TargetCheck>> {
    let mut checks = Vec::new();
    for target in targets {
        crate::progress::item(&format!(
            "{} {}",
            target.engine().display_name(),
            target.describe()
        ));
        checks.push(target.compare(archive, options).await?);
    }
    Ok(checks)
}

/// V2 on every configured database the archive has data for (none configured: no V2).
pub async fn compare_configured(
    archive: &VerifiedArchive,
    settings: &Settings,
    options: &CompareOptions,
) -> Result<Vec<TargetCheck>> {
    let manifest = archive.manifest();
    let mut targets = Vec::new();
    for engine in engine::configured_engines(settings) {
        match engine::for_archive(engine, settings, manifest)? {
            Some(target) => targets.push(target),
            None => tracing::warn!(
                "the archive holds no {engine} data; the configured {engine} database is not compared"
            ),
        }
    }
    compare(archive, &targets, options).await
}
