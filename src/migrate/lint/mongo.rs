//! MongoDB rules: the equivalents of squawk's rules that exist for collections, checked on the
//! commands of a migration file (a JSON array of database commands).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{line_col, Level, RawFinding};

pub const ADDING_VALIDATOR_WITH_ERROR_ACTION: &str = "adding-validator-with-error-action";
pub const RENAME_COLLECTION_DROP_TARGET: &str = "rename-collection-drop-target";
pub const RENAMING_COLLECTION: &str = "renaming-collection";
pub const BAN_DROP_INDEX: &str = "ban-drop-index";
pub const BAN_DROP_COLLECTION: &str = "ban-drop-collection";
pub const BAN_DROP_DATABASE: &str = "ban-drop-database";

/// Every MongoDB rule name.
pub const RULES: &[&str] = &[
    ADDING_VALIDATOR_WITH_ERROR_ACTION,
    RENAME_COLLECTION_DROP_TARGET,
    RENAMING_COLLECTION,
    BAN_DROP_INDEX,
    BAN_DROP_COLLECTION,
    BAN_DROP_DATABASE,
];

/// Lints one MongoDB migration's commands. A file that does not parse has no findings here:
/// loading it already failed with the place of the error.
pub fn lint(text: &str) -> Vec<RawFinding> {
    let Ok(Value::Array(commands)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let starts = element_starts(text);
    // Collections this file creates are empty when the rest of the file runs.
    let mut created: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        let Value::Object(command) = command else {
            continue;
        };
        let (line, column) = line_col(text, starts.get(index).copied().unwrap_or(0));
        let mut report = |rule: &str, why: String, fix: &str| {
            out.push(RawFinding {
                line,
                column,
                rule: rule.to_string(),
                level: Level::Error,
                why,
                fix: fix.to_string(),
            })
        };
        let Some((name, target)) = command.iter().next() else {
            continue;
        };
        let target = target.as_str().unwrap_or("?");
        match name.as_str() {
            "create" => {
                created.insert(target);
            }
            "collMod" if adds_rejecting_validator(command) && !created.contains(target) => report(
                ADDING_VALIDATOR_WITH_ERROR_ACTION,
                format!(
                    "collMod adds a validator to `{target}` with validationAction \"error\" (the \
                     default): from now on every write of a document that does not match is \
                     rejected, including updates of documents already stored that never matched"
                ),
                "add it with \"validationAction\": \"warn\" first, find the documents that do not \
                 match ({\"$nor\": [{\"$jsonSchema\": ...}]}) and fix them, then switch to \
                 \"error\" in a later migration",
            ),
            "renameCollection" if command.get("dropTarget") == Some(&Value::Bool(true)) => report(
                RENAME_COLLECTION_DROP_TARGET,
                format!(
                    "renameCollection `{target}` with dropTarget: true drops the collection \
                     already named {} and all its documents; a down script cannot bring them back",
                    command.get("to").and_then(Value::as_str).unwrap_or("?")
                ),
                "rename to a name that is free, and drop the old collection in its own reviewed \
                 migration after `dbkeeper migrate up --backup-first`",
            ),
            "renameCollection" => report(
                RENAMING_COLLECTION,
                format!(
                    "renaming `{target}` breaks every running application instance that still \
                     uses the old name"
                ),
                "expand and contract: deploy code that reads and writes the new name (copying \
                 with $merge), and remove the old collection in a later migration",
            ),
            "dropIndexes" => report(
                BAN_DROP_INDEX,
                format!(
                    "dropping indexes of `{target}` makes the queries that used them scan the \
                     collection; rebuilding takes as long as the first build"
                ),
                "hide the index first (collMod with \"index\": {\"name\": ..., \"hidden\": true}), \
                 watch the slow-query log, then drop it in a later migration",
            ),
            "drop" if !created.contains(target) => report(
                BAN_DROP_COLLECTION,
                format!(
                    "dropping `{target}` deletes its documents and breaks every running \
                     application instance that still uses it; a down script cannot bring them back"
                ),
                "deploy code that no longer uses the collection, then drop it in a later \
                 migration after `dbkeeper migrate up --backup-first`",
            ),
            "dropDatabase" => report(
                BAN_DROP_DATABASE,
                "dropDatabase deletes every collection of the database".to_string(),
                "drop the collections that are no longer used one by one, after a backup",
            ),
            _ => {}
        }
    }
    out
}

/// A `collMod` that sets a validator which rejects writes: validationAction is "error" (the
/// default when it is not given) and validationLevel is not "off".
fn adds_rejecting_validator(command: &Map<String, Value>) -> bool {
    command.contains_key("validator")
        && command
            .get("validationAction")
            .and_then(Value::as_str)
            .is_none_or(|a| a == "error")
        && command.get("validationLevel").and_then(Value::as_str) != Some("off")
}

/// Byte offsets where each element of the top-level JSON array starts.
pub(crate) fn element_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expecting = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if expecting && !c.is_whitespace() && c != ']' {
            starts.push(i);
            expecting = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 && c == '[' {
                    expecting = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<String> {
        lint(text).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn element_starts_skip_strings_and_nesting() {
        let text = "[\n {\"a\": \"],{\"},\n  {\"b\": [1, 2]}\n]";
        let starts = element_starts(text);
        assert_eq!(starts.len(), 2);
        assert_eq!(line_col(text, starts[1]).0, 3);
    }

    #[test]
    fn validator_with_error_action_on_an_existing_collection() {
        let bad =
            r#"[{"collMod": "users", "validator": {"$jsonSchema": {"required": ["email"]}}}]"#;
        assert_eq!(rules(bad), vec![ADDING_VALIDATOR_WITH_ERROR_ACTION]);
        let explicit = r#"[{"collMod": "users", "validator": {}, "validationAction": "error"}]"#;
        assert_eq!(rules(explicit), vec![ADDING_VALIDATOR_WITH_ERROR_ACTION]);
        let warn = r#"[{"collMod": "users", "validator": {}, "validationAction": "warn"}]"#;
        assert!(rules(warn).is_empty());
        let new = r#"[{"create": "users"}, {"collMod": "users", "validator": {}}]"#;
        assert!(rules(new).is_empty());
    }

    #[test]
    fn renames_and_drops() {
        let t = r#"[{"renameCollection": "db.a", "to": "db.b", "dropTarget": true}]"#;
        assert_eq!(rules(t), vec![RENAME_COLLECTION_DROP_TARGET]);
        let t = r#"[{"renameCollection": "db.a", "to": "db.b"}]"#;
        assert_eq!(rules(t), vec![RENAMING_COLLECTION]);
        let t = r#"[{"dropIndexes": "a", "index": "a_x"}, {"drop": "b"}, {"dropDatabase": 1}]"#;
        assert_eq!(
            rules(t),
            vec![BAN_DROP_INDEX, BAN_DROP_COLLECTION, BAN_DROP_DATABASE]
        );
        let clean = r#"[{"create": "a"}, {"createIndexes": "a", "indexes": []}, {"drop": "a"}]"#;
        assert!(rules(clean).is_empty());
    }
}
