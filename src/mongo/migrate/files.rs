//! MongoDB migration files: `V{n}__{name}.json` holds a JSON array of database commands in
//! Extended JSON (canonical or relaxed), `V{n}__{name}.down.json` the commands that undo it.
//!
//! Parsing is position-aware: every error names the line and column and, once inside the array,
//! the index of the command, because "invalid JSON" without a place is useless in a 300-line file.
//! Extended JSON wrappers (`{"$date": ...}`, `{"$numberLong": ...}`) are checked where they are
//! read, so a bad one is reported at its own closing brace rather than at the end of the file.
//!
//! The checksum is SHA-256 over the concatenated BSON bytes of the *up* commands, as re-serialized
//! from the parsed documents (down files are not part of it, like refinery's checksum of the up
//! file). Whitespace, indentation and canonical-vs-relaxed number forms therefore do not change
//! it; changing a value, a type, a key or the order of keys (the first key names the command)
//! does.

use std::cell::Cell;
use std::fmt;
use std::path::Path;

use mongodb::bson::{Bson, Document};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::migrate::{discover, repeatable, Migration, MigrationSource};

pub const FILE_EXTENSION: &str = "json";

/// Reads every `V{n}__{name}.json` (and its `.down.json`) in `dir`, parsing both so that a bad
/// file fails `status`, `validate` and `up` before anything touches the database.
pub fn load_migrations(dir: &Path) -> Result<Vec<Migration>> {
    if let Some(r) = repeatable::load(dir, FILE_EXTENSION)?.first() {
        // Refused rather than ignored: a file the operator expects to run must not be skipped.
        return Err(Error::bad_input(
            r.path.display().to_string(),
            "repeatable migrations (R__) are supported for PostgreSQL only; put the commands \
             (e.g. `collMod` of a view or validator) in a versioned V{n}__{name}.json file",
        ));
    }
    discover(dir, FILE_EXTENSION)?
        .into_iter()
        .map(load_one)
        .collect()
}

fn load_one(source: MigrationSource) -> Result<Migration> {
    let up = read_file(&source.up_path)?;
    let commands = parse_commands(&up).map_err(|e| e.in_file(&source.up_path.display()))?;
    let down = match &source.down_path {
        Some(path) => {
            let text = read_file(path)?;
            parse_commands(&text).map_err(|e| e.in_file(&path.display()))?;
            Some(text)
        }
        None => None,
    };
    Ok(Migration {
        version: source.version,
        name: source.name,
        up,
        up_path: source.up_path,
        down,
        down_path: source.down_path,
        checksum: checksum(&commands),
        no_transaction: false,
    })
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// The up and down file bodies `migrate new` writes.
pub fn new_migration_template(name: &str) -> (String, String) {
    (
        format!(
            "[\n  {{ \"create\": \"{name}\" }},\n  {{ \"createIndexes\": \"{name}\", \"indexes\": [\n    {{ \"key\": {{ \"created_at\": 1 }}, \"name\": \"{name}_created_at\" }}\n  ] }}\n]\n"
        ),
        format!("[\n  {{ \"drop\": \"{name}\" }}\n]\n"),
    )
}

/// SHA-256 (hex) of the commands' concatenated BSON bytes.
pub fn checksum(commands: &[Document]) -> String {
    let mut hasher = Sha256::new();
    let mut bytes = Vec::new();
    for command in commands {
        bytes.clear();
        command
            .to_writer(&mut bytes)
            .expect("serializing a parsed document into memory cannot fail");
        hasher.update(&bytes);
    }
    hex::encode(hasher.finalize())
}

/// Where and why a migration file did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    /// Index of the command being read, once inside the array.
    pub command_index: Option<usize>,
    /// A syntax error points at the bad character; a content error (bad Extended JSON, not a
    /// document) points just past the value at fault.
    pub syntax: bool,
    pub message: String,
}

impl ParseError {
    /// The error for the file at `path` (or another description of where the text came from).
    pub fn in_file(&self, what: &dyn fmt::Display) -> Error {
        Error::bad_input(what.to_string(), self.to_string())
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)?;
        if let Some(i) = self.command_index {
            write!(f, " (command at index {i})")?;
        }
        if self.syntax {
            write!(f, ": invalid JSON: {}", self.message)
        } else {
            write!(
                f,
                ": {} (position is the end of the value at fault)",
                self.message
            )
        }
    }
}

/// Parses a migration file's text into its commands.
pub fn parse_commands(text: &str) -> std::result::Result<Vec<Document>, ParseError> {
    let current = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = CommandsSeed { current: &current }
        .deserialize(&mut deserializer)
        .and_then(|commands| deserializer.end().map(|()| commands));
    parsed.map_err(|e| {
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let full = e.to_string();
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        ParseError {
            line: e.line(),
            column: e.column(),
            command_index: current.get(),
            syntax: matches!(
                e.classify(),
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof
            ),
            message,
        }
    })
}

/// The top-level array; records which command is being read so errors can name it.
struct CommandsSeed<'a> {
    current: &'a Cell<Option<usize>>,
}

impl<'de> DeserializeSeed<'de> for CommandsSeed<'_> {
    type Value = Vec<Document>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CommandsSeed<'_> {
    type Value = Vec<Document>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a JSON array of database commands, e.g. [{"create": "users"}]"#)
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut commands = Vec::new();
        loop {
            self.current.set(Some(commands.len()));
            match seq.next_element::<ExtJson>()? {
                Some(ExtJson(serde_json::Value::Object(map))) => {
                    if map.is_empty() {
                        return Err(de::Error::custom(
                            "an empty document is not a command; the first key names the command",
                        ));
                    }
                    let command = Document::try_from(map)
                        .map_err(|e| de::Error::custom(format!("invalid Extended JSON: {e}")))?;
                    commands.push(command);
                }
                Some(ExtJson(other)) => {
                    return Err(de::Error::custom(format!(
                        r#"expected a command document (a JSON object such as {{"create": "users"}}), found {}"#,
                        json_kind(&other)
                    )))
                }
                None => break,
            }
        }
        self.current.set(None);
        Ok(commands)
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A JSON value whose Extended JSON has been checked object by object while it was read.
struct ExtJson(serde_json::Value);

impl<'de> serde::Deserialize<'de> for ExtJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ExtJsonVisitor).map(ExtJson)
    }
}

struct ExtJsonVisitor;

impl<'de> Visitor<'de> for ExtJsonVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        if v > i64::MAX as u64 {
            return Err(E::custom(format!(
                "{v} does not fit a 64-bit signed integer (BSON has no unsigned 64-bit type)"
            )));
        }
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
        serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(ExtJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let ExtJson(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}`: a command document must say each thing once"
                )));
            }
            object.insert(key, value);
        }
        // Only `$`-keys can be Extended JSON wrappers; plain documents need no check here and
        // are converted with their command.
        if object.keys().any(|k| k.starts_with('$')) {
            let value = serde_json::Value::Object(object);
            Bson::try_from(value.clone())
                .map_err(|e| de::Error::custom(format!("invalid Extended JSON: {e}")))?;
            return Ok(value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn parses_relaxed_and_canonical_extended_json_to_the_same_bson() {
        let relaxed = r#"[{"insert": "events", "documents": [{"n": 1, "big": 9007199254740993,
            "at": {"$date": "2024-01-02T03:04:05Z"}, "x": 1.5}]}]"#;
        let canonical = r#"[
          {
            "insert": "events",
            "documents": [
              {
                "n": {"$numberInt": "1"},
                "big": {"$numberLong": "9007199254740993"},
                "at": {"$date": {"$numberLong": "1704164645000"}},
                "x": {"$numberDouble": "1.5"}
              }
            ]
          }
        ]"#;
        let a = parse_commands(relaxed).unwrap();
        let b = parse_commands(canonical).unwrap();
        assert_eq!(a, b);
        assert_eq!(checksum(&a), checksum(&b));
        let doc = a[0].get_array("documents").unwrap()[0]
            .as_document()
            .unwrap();
        assert_eq!(doc.get("big"), Some(&Bson::Int64(9007199254740993)));
        assert!(matches!(doc.get("at"), Some(Bson::DateTime(_))));
    }

    #[test]
    fn checksum_changes_with_any_value_type_or_key_order() {
        let base = checksum(&[doc! { "create": "users", "capped": false }]);
        for other in [
            doc! { "create": "user", "capped": false },
            doc! { "create": "users", "capped": true },
            doc! { "capped": false, "create": "users" },
            doc! { "create": "users", "capped": 0 },
        ] {
            assert_ne!(base, checksum(std::slice::from_ref(&other)), "{other}");
        }
        // Splitting one command into two is a change too.
        assert_ne!(
            checksum(&[doc! { "a": 1, "b": 1 }]),
            checksum(&[doc! { "a": 1 }, doc! { "b": 1 }])
        );
    }

    #[test]
    fn syntax_errors_name_line_column_and_command() {
        let text = "[\n  {\"create\": \"a\"},\n  {\"create\": \"b\",}\n]\n";
        let err = parse_commands(text).unwrap_err();
        assert_eq!((err.line, err.column), (3, 18), "{err}");
        assert_eq!(err.command_index, Some(1));
        assert!(err.syntax);
        let shown = err.in_file(&"V1__x.json").to_string();
        assert!(
            shown.starts_with("V1__x.json: line 3, column 18 (command at index 1): invalid JSON"),
            "{shown}"
        );
    }

    #[test]
    fn bad_extended_json_is_reported_at_the_wrapper() {
        let text = "[\n {\"insert\": \"t\", \"documents\": [\n   {\"at\": {\"$date\": \"yesterday\"}}\n ]}\n]";
        let err = parse_commands(text).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert_eq!(err.command_index, Some(0));
        assert!(!err.syntax);
        assert!(err.message.contains("Extended JSON"), "{err}");

        let err = parse_commands(r#"[{"a": {"$numberLong": "x"}}]"#).unwrap_err();
        assert!(err.message.contains("Extended JSON"), "{err}");
    }

    #[test]
    fn shape_errors_say_what_is_expected() {
        for (text, needle) in [
            (r#"{"create": "a"}"#, "JSON array of database commands"),
            (r#"[{"create": "a"}, 5]"#, "found a number"),
            (r#"[{}]"#, "empty document"),
            (
                r#"[{"create": "a", "create": "b"}]"#,
                "duplicate key `create`",
            ),
            (r#"[{"create": "a"}] x"#, "trailing characters"),
            ("", "EOF"),
        ] {
            let err = parse_commands(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        assert_eq!(parse_commands("[]").unwrap(), Vec::<Document>::new());
    }

    #[test]
    fn golang_migrate_files_parse_as_they_are() {
        // The shape golang-migrate's MongoDB driver documents: an array of runCommand documents.
        let text = r#"[
          {"createIndexes": "mycollection", "indexes": [{"key": {"name": -1}, "name": "name_idx", "unique": true}]},
          {"update": "mycollection", "updates": [{"q": {}, "u": {"$set": {"active": true}}, "multi": true}]}
        ]"#;
        let commands = parse_commands(text).unwrap();
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[0].keys().next().unwrap(), "createIndexes");
    }

    #[test]
    fn loads_a_directory_and_names_the_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("V1__a.json"), r#"[{"create": "a"}]"#).unwrap();
        std::fs::write(dir.path().join("V1__a.down.json"), r#"[{"drop": "a"}]"#).unwrap();
        std::fs::write(dir.path().join("V2__b.json"), "[{\"create\": \"b\"}]").unwrap();
        let loaded = load_migrations(dir.path()).unwrap();
        assert_eq!(loaded.len(), 2);
        assert!(loaded[0].down.is_some() && loaded[1].down.is_none());
        assert_eq!(loaded[0].checksum.len(), 64);

        std::fs::write(dir.path().join("V2__b.down.json"), "[{\"drop\": \"b\"]").unwrap();
        let err = load_migrations(dir.path()).unwrap_err();
        assert_eq!(err.exit_code(), crate::ExitCode::Usage);
        assert!(
            err.to_string()
                .contains("V2__b.down.json: line 1, column 14"),
            "{err}"
        );
    }
}
