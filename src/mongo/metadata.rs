//! A collection's or view's definition, as mongodump writes it: `<coll>.metadata.json`.
//!
//! The member is one JSON object in canonical Extended JSON v2, so every value keeps its exact
//! BSON type (an `int32` 1 in an index key stays `{"$numberInt":"1"}`, a `size` stays the integer
//! type the server reported):
//!
//! ```json
//! {"options":{...},"indexes":[{"v":{"$numberInt":"2"},"key":{...},"name":"_id_"}],
//!  "uuid":"<32 hex digits>","collectionName":"users","type":"collection"}
//! ```
//!
//! `options` is `listCollections`' `options` verbatim (validator, validationLevel/Action, capped,
//! size, max, collation, viewOn/pipeline, ...). `indexes` are `listIndexes` specs verbatim except
//! the legacy `ns` field, which names the *source* namespace and would be wrong after a rename.
//! Views have `"type":"view"` and no indexes.

use mongodb::bson::{Bson, Document};

use crate::error::{Error, Result};

/// Kept out of `indexes`: it names the source database and collection.
const NAMESPACE_FIELD: &str = "ns";

/// What `listCollections` reports the thing as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionKind {
    Collection,
    View,
}

impl CollectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionKind::Collection => "collection",
            CollectionKind::View => "view",
        }
    }
}

/// One collection's or view's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionMetadata {
    pub name: String,
    pub kind: CollectionKind,
    /// `listCollections` options, verbatim and in the server's order.
    pub options: Document,
    /// `listIndexes` specs in the server's order, without `ns`.
    pub indexes: Vec<Document>,
    /// The source collection's UUID (hex), for the record only: restore never reuses it.
    pub uuid: Option<String>,
}

impl CollectionMetadata {
    /// Builds the definition from one `listCollections` entry and the collection's `listIndexes`
    /// specs. Returns `Ok(None)` for kinds dbkeeper does not dump (time-series buckets are
    /// refused by the caller, which knows the name to put in the message).
    pub fn from_list_collections(
        info: &Document,
        indexes: Vec<Document>,
    ) -> Result<CollectionMetadata, String> {
        let name = info
            .get_str("name")
            .map_err(|_| "a listCollections entry has no name".to_string())?
            .to_string();
        let kind = match info.get_str("type").unwrap_or("collection") {
            "collection" => CollectionKind::Collection,
            "view" => CollectionKind::View,
            other => {
                return Err(format!(
                    "{name} is a {other}, which dbkeeper cannot back up yet; exclude it with \
                     --exclude {name}"
                ))
            }
        };
        let options = info.get_document("options").cloned().unwrap_or_default();
        let uuid = info
            .get_document("info")
            .ok()
            .and_then(|i| i.get("uuid"))
            .and_then(|u| match u {
                Bson::Binary(b) => Some(hex::encode(&b.bytes)),
                _ => None,
            });
        Ok(CollectionMetadata {
            name,
            kind,
            options,
            indexes: indexes.into_iter().map(without_namespace).collect(),
            uuid,
        })
    }

    /// The `$jsonSchema`/query validator, if the collection has one.
    pub fn validator(&self) -> Option<&Document> {
        self.options
            .get_document("validator")
            .ok()
            .filter(|v| !v.is_empty())
    }

    /// Index specs to build on restore: all but the `_id` index, which `create` makes itself.
    pub fn secondary_indexes(&self) -> impl Iterator<Item = &Document> {
        self.indexes
            .iter()
            .filter(|spec| spec.get_str("name") != Ok("_id_"))
    }

    /// The member text, in mongodump's layout and canonical Extended JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut doc = Document::new();
        doc.insert("options", self.options.clone());
        doc.insert(
            "indexes",
            self.indexes
                .iter()
                .cloned()
                .map(Bson::Document)
                .collect::<Vec<_>>(),
        );
        if let Some(uuid) = &self.uuid {
            doc.insert("uuid", uuid.clone());
        }
        doc.insert("collectionName", self.name.clone());
        doc.insert("type", self.kind.as_str());
        let mut json = serde_json::to_vec(&Bson::Document(doc).into_canonical_extjson())
            .expect("a JSON value always serializes");
        json.push(b'\n');
        json
    }

    /// Parses a member written by [`CollectionMetadata::to_json`] (or by mongodump). `member`
    /// names it in errors.
    pub fn from_json(bytes: &[u8], member: &str) -> Result<CollectionMetadata> {
        let bad = |message: String| Error::bad_input(format!("archive member {member}"), message);
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("is not valid JSON: {e}")))?;
        let Bson::Document(doc) =
            Bson::try_from(value).map_err(|e| bad(format!("is not valid Extended JSON: {e}")))?
        else {
            return Err(bad("is not a JSON object".into()));
        };
        let name = doc
            .get_str("collectionName")
            .map_err(|_| bad("has no collectionName".into()))?
            .to_string();
        let kind = match doc.get_str("type").unwrap_or("collection") {
            "collection" => CollectionKind::Collection,
            "view" => CollectionKind::View,
            other => return Err(bad(format!("has unsupported type {other:?}"))),
        };
        let options = match doc.get("options") {
            None => Document::new(),
            Some(Bson::Document(d)) => d.clone(),
            Some(_) => return Err(bad("has options that are not an object".into())),
        };
        let mut indexes = Vec::new();
        match doc.get("indexes") {
            None => {}
            Some(Bson::Array(specs)) => {
                for spec in specs {
                    match spec {
                        Bson::Document(d) if d.get_str("name").is_ok() => {
                            indexes.push(without_namespace(d.clone()))
                        }
                        _ => return Err(bad("has an index spec without a name".into())),
                    }
                }
            }
            Some(_) => return Err(bad("has indexes that are not an array".into())),
        }
        let uuid = doc.get_str("uuid").ok().map(str::to_string);
        Ok(CollectionMetadata {
            name,
            kind,
            options,
            indexes,
            uuid,
        })
    }

    /// The comparable part of the definition (see [`CollectionSpecs`]).
    pub fn specs(&self) -> CollectionSpecs {
        CollectionSpecs::new(self.options.clone(), self.indexes.clone())
    }
}

fn without_namespace(mut spec: Document) -> Document {
    spec.remove(NAMESPACE_FIELD);
    spec
}

/// A collection's options and index specs in a form two servers' answers can be compared in:
/// indexes sorted by name and without `ns`; the top-level fields of the options and of each
/// index spec sorted by name (servers list them in their own order; it carries no meaning). The
/// *contents* are untouched: an index's `key` keeps its field order (it defines the index), and
/// every value keeps its BSON type. Equality compares the BSON bytes (a `Document`'s own `==`
/// ignores field order at every level, which would hide a reordered index key).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CollectionSpecs {
    pub options: Document,
    pub indexes: Vec<Document>,
}

impl CollectionSpecs {
    pub fn new(options: Document, indexes: Vec<Document>) -> CollectionSpecs {
        let mut indexes: Vec<Document> = indexes
            .into_iter()
            .map(|spec| sorted_fields(without_namespace(spec)))
            .collect();
        indexes.sort_by(|a, b| a.get_str("name").ok().cmp(&b.get_str("name").ok()));
        CollectionSpecs {
            options: sorted_fields(options),
            indexes,
        }
    }
}

impl PartialEq for CollectionSpecs {
    fn eq(&self, other: &CollectionSpecs) -> bool {
        let bytes = |d: &Document| {
            let mut out = Vec::new();
            d.to_writer(&mut out).expect("a document always serializes");
            out
        };
        bytes(&self.options) == bytes(&other.options)
            && self.indexes.len() == other.indexes.len()
            && self
                .indexes
                .iter()
                .zip(&other.indexes)
                .all(|(a, b)| bytes(a) == bytes(b))
    }
}

fn sorted_fields(doc: Document) -> Document {
    let mut fields: Vec<(String, Bson)> = doc.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields.into_iter().collect()
}

/// The archive member holding one collection's definition:
/// `mongo/meta/<index>-<sanitized name>.metadata.json`. The index (position among the dump's
/// collections and views) keeps names that sanitize alike apart.
pub fn member_name(index: usize, name: &str) -> String {
    format!(
        "mongo/meta/{index:05}-{}.metadata.json",
        crate::archive::sanitize_component(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, Binary, Regex};

    fn sample() -> CollectionMetadata {
        let info = doc! {
            "name": "users",
            "type": "collection",
            "options": {
                "validator": { "$jsonSchema": { "bsonType": "object", "required": ["email"] },
                               "name": { "$regex": "^a", "$options": "i" },
                               "kind": { "$type": "string" } },
                "validationLevel": "moderate",
                "capped": true, "size": 4096_i64, "max": 10_i32,
                "collation": { "locale": "en", "strength": 2 },
            },
            "info": { "readOnly": false, "uuid": Binary {
                subtype: mongodb::bson::spec::BinarySubtype::Uuid, bytes: vec![7; 16] } },
        };
        let indexes = vec![
            doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_", "ns": "shop.users" },
            doc! { "v": 2, "key": { "email": 1, "at": -1.0 }, "name": "email", "unique": true,
            "partialFilterExpression": { "email": { "$exists": true } },
            "expireAfterSeconds": 3600_i64,
            "pattern": Regex { pattern: "x".into(), options: "i".into() } },
        ];
        CollectionMetadata::from_list_collections(&info, indexes).unwrap()
    }

    #[test]
    fn metadata_round_trips_with_exact_types_and_order() {
        let meta = sample();
        assert_eq!(meta.uuid.as_deref(), Some("07".repeat(16).as_str()));
        assert!(meta.indexes.iter().all(|i| !i.contains_key("ns")));
        let json = meta.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.starts_with("{\"options\":"), "{text}");
        assert!(
            text.contains("\"size\":{\"$numberLong\":\"4096\"}"),
            "{text}"
        );
        // Query operators that look like legacy Extended JSON stay documents.
        assert!(text.contains("\"$regex\":\"^a\""), "{text}");
        let back = CollectionMetadata::from_json(&json, "m").unwrap();
        // Byte-equal JSON: same fields, same order, same types at every level.
        assert_eq!(back.to_json(), json);
        assert_eq!(back.specs(), meta.specs());
        assert_eq!(
            back.options.get_document("validator").unwrap(),
            meta.options.get_document("validator").unwrap()
        );
        assert_eq!(back.secondary_indexes().count(), 1);
    }

    #[test]
    fn damaged_metadata_is_refused_with_the_member_name() {
        for bad in [
            &b"not json"[..],
            b"[1]",
            b"{\"type\":\"collection\"}",
            b"{\"collectionName\":\"x\",\"type\":\"timeseries\"}",
            b"{\"collectionName\":\"x\",\"indexes\":[{\"key\":{}}]}",
        ] {
            let err = CollectionMetadata::from_json(bad, "mongo/meta/00001-x.metadata.json")
                .unwrap_err()
                .to_string();
            assert!(err.contains("mongo/meta/00001-x.metadata.json"), "{err}");
        }
    }

    #[test]
    fn specs_ignore_field_order_but_not_key_order() {
        let a = CollectionSpecs::new(
            doc! { "capped": true, "size": 10 },
            vec![
                doc! { "v": 2, "name": "b", "key": { "x": 1, "y": 1 } },
                doc! { "name": "a" },
            ],
        );
        let b = CollectionSpecs::new(
            doc! { "size": 10, "capped": true },
            vec![
                doc! { "name": "a" },
                doc! { "key": { "x": 1, "y": 1 }, "name": "b", "v": 2 },
            ],
        );
        assert_eq!(a, b);
        let c = CollectionSpecs::new(
            doc! { "size": 10, "capped": true },
            vec![
                doc! { "name": "a" },
                doc! { "key": { "y": 1, "x": 1 }, "name": "b", "v": 2 },
            ],
        );
        assert_ne!(a, c);
    }

    #[test]
    fn unsupported_kinds_name_the_collection_and_the_way_out() {
        let err = CollectionMetadata::from_list_collections(
            &doc! { "name": "weather", "type": "timeseries" },
            vec![],
        )
        .unwrap_err();
        assert!(err.contains("--exclude weather"), "{err}");
    }
}
