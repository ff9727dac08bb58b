//! Which tables and collections a command acts on: `--include`/`--exclude` glob patterns, the
//! same for `backup` (what is dumped) and `restore` (what is restored and then verified).

use globset::{Glob, GlobMatcher};

use super::manifest::Dataset;
use crate::error::{Error, Result};

/// Selects tables or collections by glob patterns (`*`, `?`, `[...]`; `*` also matches `.`). A pattern is
/// matched against both the name and `namespace.name` (schema or database), so `users`,
/// `shop.users` and `shop.*` all select `shop.users`. With no include pattern everything is included;
/// exclusions win over inclusions.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Vec<GlobMatcher>,
    exclude: Vec<GlobMatcher>,
}

impl Selection {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selection> {
        Ok(Selection {
            include: compile(include, "--include")?,
            exclude: compile(exclude, "--exclude")?,
        })
    }

    pub fn selects(&self, namespace: &str, name: &str) -> bool {
        let qualified = format!("{namespace}.{name}");
        let hit = |m: &GlobMatcher| m.is_match(name) || m.is_match(&qualified);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }

    pub fn selects_dataset(&self, dataset: &Dataset) -> bool {
        self.selects(&dataset.namespace, &dataset.name)
    }

    /// No pattern given: everything is selected.
    pub fn is_everything(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

fn compile(patterns: &[String], flag: &str) -> Result<Vec<GlobMatcher>> {
    patterns
        .iter()
        .map(|p| {
            Glob::new(p)
                .map(|g| g.compile_matcher())
                .map_err(|e| Error::Usage(format!("{flag} {p:?} is not a valid pattern: {e}")))
        })
        .collect()
}
