//! Masking MongoDB documents, a chunk of raw BSON at a time.
//!
//! A rule's key is a dotted path; a path through an array applies to every element, at any
//! depth (`addresses.street` masks the street of every address). Documents of a collection
//! without rules are never decoded; a document none of whose ruled paths it has is copied
//! through as it is.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bson::{Bson, Document, RawBsonRef, RawDocument};

use super::key::MaskKey;
use super::transform::{mask_text, Transform};
use crate::archive::digest::ContentDigest;

/// One ruled field path of a collection.
#[derive(Debug)]
pub struct FieldMask {
    /// The dotted path as written in the rules file.
    pub path: String,
    pub transform: Transform,
    /// Values changed so far (over all chunks and threads).
    pub changed: AtomicU64,
}

/// The rules of one collection.
#[derive(Debug)]
pub struct CollectionMask {
    key: MaskKey,
    /// `keep` rules left out.
    fields: Vec<FieldMask>,
    /// The digest of every masked document so far (over all chunks and threads).
    streamed: Mutex<ContentDigest>,
}

impl CollectionMask {
    pub fn new(key: MaskKey, mut fields: Vec<FieldMask>) -> CollectionMask {
        fields.retain(|f| f.transform.masks());
        CollectionMask {
            key,
            fields,
            streamed: Mutex::new(ContentDigest::new()),
        }
    }

    /// The content digest of every document this mask produced (raw BSON, as the archive hashes
    /// documents): after a restore, what the collection holds.
    pub fn streamed_digest(&self) -> ContentDigest {
        *self.streamed.lock().expect("streamed digest")
    }

    pub fn fields(&self) -> &[FieldMask] {
        &self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The chunk (concatenated documents) with every ruled path masked. An error names the
    /// document by position (never a value).
    pub fn mask_chunk(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        self.mask_chunk_digested(data).map(|(out, _)| out)
    }

    /// [`Self::mask_chunk`], with the digest of the masked documents (added to
    /// [`Self::streamed_digest`] too).
    pub fn mask_chunk_digested(&self, data: &[u8]) -> Result<(Vec<u8>, ContentDigest), String> {
        let mut out = Vec::with_capacity(data.len() + data.len() / 4);
        let mut changed = vec![0u64; self.fields.len()];
        let mut digest = ContentDigest::new();
        let mut rest = data;
        let mut number = 0usize;
        while !rest.is_empty() {
            number += 1;
            let len = rest
                .get(..4)
                .map(|p| i32::from_le_bytes([p[0], p[1], p[2], p[3]]))
                .and_then(|l| usize::try_from(l).ok())
                .filter(|&l| l >= 5 && l <= rest.len())
                .ok_or_else(|| format!("bad BSON document length at document {number}"))?;
            let (raw, tail) = rest.split_at(len);
            rest = tail;
            let raw = RawDocument::from_bytes(raw)
                .map_err(|e| format!("document {number} is not valid BSON: {e}"))?;
            let touched = self.fields.iter().any(|f| {
                let top = f.path.split('.').next().unwrap_or_default();
                raw.get(top).ok().flatten().is_some()
            });
            if !touched {
                out.extend_from_slice(raw.as_bytes());
                digest.add(raw.as_bytes());
                continue;
            }
            let mut document = Document::try_from(raw)
                .map_err(|e| format!("document {number} is not valid BSON: {e}"))?;
            for (slot, field) in self.fields.iter().enumerate() {
                let path: Vec<&str> = field.path.split('.').collect();
                changed[slot] += self.mask_path(&mut document, &path, &field.transform);
            }
            let start = out.len();
            document
                .to_writer(&mut out)
                .map_err(|e| format!("document {number} cannot be written back: {e}"))?;
            digest.add(&out[start..]);
        }
        for (field, n) in self.fields.iter().zip(changed) {
            field.changed.fetch_add(n, Ordering::Relaxed);
        }
        self.streamed
            .lock()
            .expect("streamed digest")
            .merge(&digest);
        Ok((out, digest))
    }

    /// Masks `path` inside `document`; returns how many values changed.
    fn mask_path(&self, document: &mut Document, path: &[&str], transform: &Transform) -> u64 {
        let (first, rest) = (path[0], &path[1..]);
        if rest.is_empty() && *transform == Transform::Null {
            // A missing optional field passes any $jsonSchema; a null one may not.
            return u64::from(document.remove(first).is_some_and(|v| v != Bson::Null));
        }
        match document.get_mut(first) {
            None => 0,
            Some(value) if rest.is_empty() => self.mask_leaf(value, transform),
            Some(value) => self.descend(value, rest, transform),
        }
    }

    fn descend(&self, value: &mut Bson, rest: &[&str], transform: &Transform) -> u64 {
        match value {
            Bson::Document(inner) => self.mask_path(inner, rest, transform),
            Bson::Array(items) => items
                .iter_mut()
                .map(|item| self.descend(item, rest, transform))
                .sum(),
            _ => 0,
        }
    }

    /// Masks a value the path ends at (every element, when it is an array).
    fn mask_leaf(&self, value: &mut Bson, transform: &Transform) -> u64 {
        let masked = match value {
            Bson::Null => return 0,
            Bson::Array(items) => {
                return items
                    .iter_mut()
                    .map(|item| self.mask_leaf(item, transform))
                    .sum()
            }
            _ => match transform {
                Transform::Keep => return 0,
                Transform::Null => Bson::Null,
                Transform::Constant(text) => Bson::String(text.clone()),
                Transform::Hash => match &*value {
                    Bson::Int32(n) => {
                        Bson::Int32(self.key.permute_signed(i64::from(*n), 32) as i32)
                    }
                    Bson::Int64(n) => Bson::Int64(self.key.permute_signed(*n, 64)),
                    other => self.text(other, transform),
                },
                _ => self.text(value, transform),
            },
        };
        let changed = *value != masked;
        *value = masked;
        u64::from(changed)
    }

    /// A text transform of a value: a string by its UTF-8 bytes (as PostgreSQL text is hashed),
    /// anything else by its extended JSON form.
    fn text(&self, value: &Bson, transform: &Transform) -> Bson {
        let masked = match value {
            Bson::String(s) => mask_text(&self.key, transform, s.as_bytes()),
            other => mask_text(&self.key, transform, other.to_string().as_bytes()),
        };
        Bson::String(masked.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn field(path: &str, transform: Transform) -> FieldMask {
        FieldMask {
            path: path.into(),
            transform,
            changed: AtomicU64::new(0),
        }
    }

    fn chunk(docs: &[Document]) -> Vec<u8> {
        let mut out = Vec::new();
        for d in docs {
            d.to_writer(&mut out).unwrap();
        }
        out
    }

    fn read(data: &[u8]) -> Vec<Document> {
        let mut docs = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let len = i32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            docs.push(Document::from_reader(&rest[..len]).unwrap());
            rest = &rest[len..];
        }
        docs
    }

    #[test]
    fn paths_through_arrays_and_nested_documents_are_masked() {
        let key = MaskKey::from_secret(b"document test key!!!").unwrap();
        let mask = CollectionMask::new(
            key.clone(),
            vec![
                field("email", Transform::Email),
                field("profile.phone", Transform::Null),
                field("addresses.street", Transform::Hash),
                field("n", Transform::Hash),
                field("plan", Transform::Keep),
            ],
        );
        let input = vec![
            doc! { "_id": 1, "email": "ada@x.org", "profile": { "phone": "+44 1", "tz": "UTC" },
            "addresses": [ { "street": "1 Main St" }, { "street": "2 High St" }, 7 ],
            "n": 42_i64, "plan": "gold" },
            doc! { "_id": 2, "plan": "free" },
        ];
        let out = read(&mask.mask_chunk(&chunk(&input)).unwrap());
        let d = &out[0];
        let email = d.get_str("email").unwrap();
        assert_eq!(
            Some(email.to_string()),
            mask_text(&key, &Transform::Email, b"ada@x.org")
        );
        assert_eq!(d.get_document("profile").unwrap(), &doc! { "tz": "UTC" });
        let streets = d.get_array("addresses").unwrap();
        assert_ne!(
            streets[0].as_document().unwrap().get_str("street").unwrap(),
            "1 Main St"
        );
        assert_eq!(streets[2], Bson::Int32(7));
        assert_ne!(d.get_i64("n").unwrap(), 42);
        assert_eq!(d.get_str("plan").unwrap(), "gold");
        assert_eq!(out[1], input[1]);
        let counts: Vec<u64> = mask
            .fields()
            .iter()
            .map(|f| f.changed.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [1, 1, 2, 1]);
        // The streamed digest is of the documents as written: the masked one, the untouched one.
        let written = mask.mask_chunk(&chunk(&input)).unwrap();
        let mut expected = ContentDigest::new();
        for d in read(&written) {
            let mut bytes = Vec::new();
            d.to_writer(&mut bytes).unwrap();
            expected.add(&bytes);
        }
        let mut twice = expected;
        twice.merge(&expected);
        assert_eq!(mask.streamed_digest(), twice);
        let mut original = ContentDigest::new();
        input
            .iter()
            .for_each(|d| original.add(&chunk(std::slice::from_ref(d))));
        assert_ne!(expected, original);
    }
}

/// Adds the field paths of a document to `paths` (arrays looked through: the fields of an
/// array's sub-documents appear under the array's path).
pub fn add_document_paths(document: &RawDocument, prefix: &str, paths: &mut BTreeSet<String>) {
    for (key, value) in document.iter().flatten() {
        let path = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        add_value_paths(value, &path, paths);
        paths.insert(path);
    }
}

fn add_value_paths(value: RawBsonRef<'_>, path: &str, paths: &mut BTreeSet<String>) {
    match value {
        RawBsonRef::Document(inner) => add_document_paths(inner, path, paths),
        RawBsonRef::Array(items) => {
            for item in items.into_iter().flatten() {
                add_value_paths(item, path, paths);
            }
        }
        _ => {}
    }
}

/// Adds the field paths a collection validator's `$jsonSchema` declares to `known`, and the
/// ones it requires to `required` (a nested `required` counts only under a required parent
/// path being present, which is what the path means).
pub fn add_schema_paths(
    validator: &Document,
    known: &mut BTreeSet<String>,
    required: &mut BTreeSet<String>,
) {
    if let Ok(schema) = validator.get_document("$jsonSchema") {
        add_schema_level(schema, "", known, required);
    }
}

fn add_schema_level(
    schema: &Document,
    prefix: &str,
    known: &mut BTreeSet<String>,
    required: &mut BTreeSet<String>,
) {
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    if let Ok(names) = schema.get_array("required") {
        required.extend(names.iter().filter_map(Bson::as_str).map(join));
    }
    if let Ok(properties) = schema.get_document("properties") {
        for (name, sub) in properties {
            let path = join(name);
            if let Bson::Document(sub) = sub {
                add_schema_level(sub, &path, known, required);
            }
            known.insert(path);
        }
    }
    match schema.get("items") {
        Some(Bson::Document(items)) => add_schema_level(items, prefix, known, required),
        Some(Bson::Array(items)) => {
            for item in items.iter().filter_map(Bson::as_document) {
                add_schema_level(item, prefix, known, required);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;
    use bson::{doc, RawDocumentBuf};

    #[test]
    fn paths_come_from_documents_and_schemas() {
        let mut paths = BTreeSet::new();
        let raw = RawDocumentBuf::from_document(
            &doc! { "a": 1, "b": { "c": 2 }, "d": [ { "e": 1 }, 3 ] },
        )
        .unwrap();
        add_document_paths(&raw, "", &mut paths);
        assert_eq!(
            paths,
            ["a", "b", "b.c", "d", "d.e"].map(String::from).into()
        );
        let (mut known, mut required) = (BTreeSet::new(), BTreeSet::new());
        add_schema_paths(
            &doc! { "$jsonSchema": { "required": ["email"], "properties": {
            "email": { "bsonType": "string" },
            "addresses": { "bsonType": "array", "items": {
                "required": ["street"], "properties": { "street": {} } } } } } },
            &mut known,
            &mut required,
        );
        assert_eq!(
            known,
            ["addresses", "addresses.street", "email"]
                .map(String::from)
                .into()
        );
        assert_eq!(
            required,
            ["addresses.street", "email"].map(String::from).into()
        );
    }
}
