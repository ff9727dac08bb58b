//! Which collections a dump takes (`--include`/`--exclude` glob patterns) and what they are
//! called after a restore (`--ns-from`/`--ns-to` renames).

use crate::error::{Error, Result};

/// `--include`/`--exclude`: the one selection both engines' dumps and restores use.
pub use crate::archive::selection::Selection as NamespaceFilter;

/// One collection rename applied on restore. `from` may contain one `*`, which matches any run of
/// characters; the matched text replaces the `*` in `to` (`--ns-from 'audit_*' --ns-to 'old_*'`).
/// The first rename that matches a name applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    from: String,
    to: String,
}

impl Rename {
    pub fn new(from: &str, to: &str) -> Result<Rename> {
        let stars = |s: &str| s.matches('*').count();
        if stars(from) > 1 || stars(to) > stars(from) || from.is_empty() || to.is_empty() {
            return Err(Error::Usage(format!(
                "--ns-from {from:?} --ns-to {to:?}: each may contain at most one `*`, `--ns-to` \
                 only if `--ns-from` has one, and neither may be empty"
            )));
        }
        Ok(Rename {
            from: from.to_string(),
            to: to.to_string(),
        })
    }

    /// The pattern renamed from.
    pub fn pattern(&self) -> &str {
        &self.from
    }

    /// The new name if this rename applies to `name`.
    pub fn apply(&self, name: &str) -> Option<String> {
        match self.from.split_once('*') {
            None => (name == self.from).then(|| self.to.clone()),
            Some((prefix, suffix)) => {
                let middle = name
                    .strip_prefix(prefix)?
                    .strip_suffix(suffix)
                    .filter(|_| name.len() >= prefix.len() + suffix.len())?;
                Some(self.to.replacen('*', middle, 1))
            }
        }
    }
}

/// The name `name` gets on restore: the first matching rename, or itself.
pub fn renamed(renames: &[Rename], name: &str) -> String {
    renames
        .iter()
        .find_map(|r| r.apply(name))
        .unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_bare_and_qualified_names() {
        let f =
            NamespaceFilter::new(&["shop.u*".into(), "orders".into()], &["*_tmp".into()]).unwrap();
        assert!(f.selects("shop", "users"));
        assert!(f.selects("shop", "orders"));
        assert!(!f.selects("shop", "users_tmp"));
        assert!(!f.selects("shop", "carts"));
        assert!(!f.selects("other", "users"));
        let all = NamespaceFilter::new(&[], &["logs.*".into()]).unwrap();
        assert!(all.selects("x", "anything"));
        assert!(!all.selects("x", "logs.2024"));
        let err = NamespaceFilter::new(&["[".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("--include"), "{err}");
    }

    #[test]
    fn renames_support_one_wildcard() {
        let renames = [
            Rename::new("users", "people").unwrap(),
            Rename::new("audit_*_log", "old_*").unwrap(),
        ];
        assert_eq!(renamed(&renames, "users"), "people");
        assert_eq!(renamed(&renames, "audit_2024_log"), "old_2024");
        assert_eq!(renamed(&renames, "audit_log"), "audit_log");
        assert_eq!(renamed(&renames, "orders"), "orders");
        assert!(Rename::new("a*b*", "c").is_err());
        assert!(Rename::new("a", "b*").is_err());
        assert!(Rename::new("", "b").is_err());
    }
}
