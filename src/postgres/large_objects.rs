//! PostgreSQL large objects (`pg_largeobject`): backed up, restored and verified like pg_dump
//! and pg_restore do, with their OIDs.
//!
//! - Metadata: pg_dump's pre-data script already holds `SELECT pg_catalog.lo_create('oid')`,
//!   `ALTER LARGE OBJECT ... OWNER TO`, `COMMENT ON LARGE OBJECT` and the `GRANT`s of every large
//!   object, so restore creates them (same OIDs) with the rest of pre-data, and the usual
//!   `--keep-owner` / `--keep-privileges` filtering applies to them.
//! - Data: one dataset of format [`RecordFormat::LargeObject`], `pg_catalog.pg_largeobject`,
//!   whose records are pieces of at most [`PIECE_BYTES`] bytes ([`LargeObjectPiece`]: OID,
//!   offset, bytes), read with `lo_get(oid, offset, length)` in the dump's snapshot and cut into
//!   chunks like table rows: memory stays bounded whatever an object's size, and V0/V1 check the chunks as they
//!   check any dataset's. Restore writes each chunk with one `lo_put` statement.
//! - Manifest: `engines.postgres.large_objects` lists every object with its size, SHA-256,
//!   owner, ACL and comment, which V2 compares with a target object by object.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::archive::chunk::{
    ChunkBuilder, CompressedChunk, DecodedChunk, Encoding, LargeObjectPiece, RecordFormat,
};
use crate::archive::digest::ContentDigest;
use crate::archive::pipeline::{EncodeAhead, MemberSender};
use crate::archive::reader::VerifiedArchive;
use crate::archive::{chunk_member_name, ChunkEntry, Dataset, Manifest};
use crate::error::{Engine, Error, Result};
use crate::postgres::inspect::db_error;
use crate::verify::{Kind, TargetCheck};

/// The dataset holding large-object data (never a table of the archive).
pub const DATASET_NAMESPACE: &str = "pg_catalog";
pub const DATASET_NAME: &str = "pg_largeobject";

/// Bytes of a large object read by one `lo_get` and stored in one record: what bounds memory,
/// whatever the object's size.
pub const PIECE_BYTES: i32 = 1 << 20;

/// `INV_READ`, for `lo_open`.
const INV_READ: i32 = 0x40000;

/// What the manifest's `engines.postgres.large_objects` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargeObjectsMeta {
    /// Bytes per record of the data dataset (the last piece of an object is shorter).
    pub piece_bytes: u64,
    /// Every large object, by OID.
    pub objects: Vec<LargeObjectEntry>,
}

/// One large object at dump time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargeObjectEntry {
    pub oid: u32,
    pub size: u64,
    /// Lowercase hex SHA-256 of the object's bytes.
    pub sha256: String,
    pub owner: String,
    /// `lomacl` as text; `None` for the default privileges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The large-object data dataset of an archive and its index in the manifest, if any.
pub fn data_dataset(manifest: &Manifest) -> Option<(usize, &Dataset)> {
    manifest
        .datasets
        .iter()
        .enumerate()
        .find(|(_, d)| d.engine == Engine::Postgres && d.format == RecordFormat::LargeObject)
}

/// Every object's metadata and first piece, in one pass; the rest of longer objects is read
/// piece by piece afterwards. No ORDER BY: a sort would hold every first piece at once.
const FIRST_PIECES: &str = "SELECT m.oid, pg_catalog.pg_get_userbyid(m.lomowner)::text,
        m.lomacl::text, pg_catalog.obj_description(m.oid, 'pg_largeobject'),
        pg_catalog.lo_get(m.oid, 0, $1)
     FROM pg_catalog.pg_largeobject_metadata m";

/// Dumps every large object on `client`, a connection inside the dump's snapshot; the chunks
/// go to `sender` as members of dataset number `dataset_index`.
pub async fn dump(
    client: &Client,
    dataset_index: usize,
    encoding: &Encoding,
    chunk_bytes: usize,
    sender: &MemberSender,
) -> Result<(Dataset, LargeObjectsMeta)> {
    let mut out = PieceWriter::new(dataset_index, encoding.clone(), chunk_bytes, sender);
    let rows = client
        .query_raw(FIRST_PIECES, &[&PIECE_BYTES])
        .await
        .map_err(|e| db_error("reading large objects", &e))?;
    futures::pin_mut!(rows);
    let mut objects = Vec::new();
    let mut longer = Vec::new();
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| db_error("reading large objects", &e))?;
        let oid: u32 = row.get(0);
        let data: &[u8] = row.get(4);
        out.piece(oid, 0, data).await?;
        let mut hasher = Sha256::new();
        hasher.update(data);
        let mut entry = LargeObjectEntry {
            oid,
            size: data.len() as u64,
            sha256: String::new(),
            owner: row.get(1),
            acl: row.get(2),
            comment: row.get(3),
        };
        if data.len() < PIECE_BYTES as usize {
            entry.sha256 = hex::encode(hasher.finalize());
        } else {
            longer.push((objects.len(), hasher));
        }
        objects.push(entry);
    }
    for (index, mut hasher) in longer {
        let entry = &mut objects[index];
        let mut offset = i64::from(PIECE_BYTES);
        loop {
            let row = read_piece(client, entry.oid, offset).await?;
            let data: &[u8] = row.get(0);
            hasher.update(data);
            out.piece(entry.oid, offset, data).await?;
            offset += data.len() as i64;
            if data.len() < PIECE_BYTES as usize {
                break;
            }
        }
        entry.size = offset as u64;
        entry.sha256 = hex::encode(hasher.finalize());
    }
    objects.sort_by_key(|o| o.oid);
    let dataset = out.finish().await?;
    Ok((
        dataset,
        LargeObjectsMeta {
            piece_bytes: PIECE_BYTES as u64,
            objects,
        },
    ))
}

/// The piece of object `oid` at `offset` (`PIECE_BYTES` long, shorter at the end).
async fn read_piece(client: &Client, oid: u32, offset: i64) -> Result<tokio_postgres::Row> {
    client
        .query_one(
            "SELECT pg_catalog.lo_get($1, $2, $3)",
            &[&oid, &offset, &PIECE_BYTES],
        )
        .await
        .map_err(|e| db_error(&format!("reading large object {oid}"), &e))
}

/// Cuts pieces into chunks, compressing one while the next fills, and records them.
struct PieceWriter<'a> {
    dataset_index: usize,
    encoding: Encoding,
    builder: ChunkBuilder,
    record: Vec<u8>,
    ahead: EncodeAhead,
    chunks: Vec<ChunkEntry>,
    digest: ContentDigest,
    raw_bytes: u64,
    sender: &'a MemberSender,
}

impl<'a> PieceWriter<'a> {
    fn new(
        dataset_index: usize,
        encoding: Encoding,
        chunk_bytes: usize,
        sender: &'a MemberSender,
    ) -> PieceWriter<'a> {
        PieceWriter {
            dataset_index,
            encoding,
            builder: ChunkBuilder::new(RecordFormat::LargeObject, chunk_bytes),
            record: Vec::new(),
            ahead: EncodeAhead::default(),
            chunks: Vec::new(),
            digest: ContentDigest::new(),
            raw_bytes: 0,
            sender,
        }
    }

    async fn piece(&mut self, oid: u32, offset: i64, data: &[u8]) -> Result<()> {
        self.record.clear();
        LargeObjectPiece {
            oid,
            offset: offset as u64,
            data,
        }
        .write(&mut self.record);
        self.builder.push_record(&self.record);
        if self.builder.is_full() {
            self.cut().await?;
        }
        Ok(())
    }

    /// Starts compressing the builder's chunk after delivering the previous one.
    async fn cut(&mut self) -> Result<()> {
        let Some(raw) = self.builder.take() else {
            return Ok(());
        };
        if let Some(previous) = self.ahead.finished().await? {
            self.deliver(previous).await?;
        }
        let name = chunk_member_name(
            super::dump::ENGINE_KEY,
            self.dataset_index,
            &format!("{DATASET_NAMESPACE}.{DATASET_NAME}"),
            self.chunks.len(),
            RecordFormat::LargeObject,
            self.encoding.compression.codec,
        );
        let encoding = self.encoding.clone();
        self.ahead.start(move || raw.encode(name, &encoding));
        Ok(())
    }

    async fn deliver(&mut self, chunk: CompressedChunk) -> Result<()> {
        self.digest.merge(&chunk.digest);
        self.raw_bytes += chunk.raw_bytes;
        self.chunks.push(chunk.entry());
        self.sender.send(chunk.member).await
    }

    async fn finish(mut self) -> Result<Dataset> {
        self.cut().await?;
        if let Some(last) = self.ahead.finished().await? {
            self.deliver(last).await?;
        }
        Ok(Dataset {
            engine: Engine::Postgres,
            namespace: DATASET_NAMESPACE.into(),
            name: DATASET_NAME.into(),
            format: RecordFormat::LargeObject,
            rows: self.digest.count(),
            raw_bytes: self.raw_bytes,
            digest: self.digest.to_hex(),
            chunks: self.chunks,
            extra: Value::Null,
        })
    }
}

/// Writes the archive's large-object data into `client`'s database, whose pre-data already
/// created the objects (empty, with their OIDs); returns the number of pieces written. One
/// chunk is decompressed while the previous one is written.
pub async fn restore(archive: &Arc<VerifiedArchive>, client: &Client) -> Result<u64> {
    let Some((index, dataset)) = data_dataset(archive.manifest()) else {
        return Ok(0);
    };
    let decode = |chunk: usize| {
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || {
            let d = &archive.manifest().datasets[index];
            archive.read_chunk(d, &d.chunks[chunk])
        })
    };
    let mut next = (!dataset.chunks.is_empty()).then(|| decode(0));
    let mut pieces = 0;
    for (i, entry) in dataset.chunks.iter().enumerate() {
        let chunk = next
            .take()
            .expect("one decode per chunk")
            .await
            .map_err(|e| Error::io("decoding a chunk", std::io::Error::other(e)))??;
        next = (i + 1 < dataset.chunks.len()).then(|| decode(i + 1));
        let what = format!(
            "archive {}, member {}",
            archive.path().display(),
            entry.member
        );
        let (oids, offsets, data) = parse_pieces(&chunk).map_err(|m| Error::bad_input(&what, m))?;
        client
            .execute(
                "SELECT pg_catalog.lo_put(p.o, p.off, p.d)
                 FROM unnest($1::oid[], $2::int8[], $3::bytea[]) AS p(o, off, d)",
                &[&oids, &offsets, &data],
            )
            .await
            .map_err(|e| db_error(&format!("writing large objects from {}", entry.member), &e))?;
        pieces += oids.len() as u64;
    }
    Ok(pieces)
}

type Pieces<'a> = (Vec<u32>, Vec<i64>, Vec<&'a [u8]>);

/// The pieces of one decoded chunk, as `lo_put` arguments.
fn parse_pieces(chunk: &DecodedChunk) -> std::result::Result<Pieces<'_>, String> {
    let mut out: Pieces = Default::default();
    let mut rest = &chunk.data[..];
    while !rest.is_empty() {
        let piece = LargeObjectPiece::parse(rest)
            .filter(|p| i64::try_from(p.offset).is_ok())
            .ok_or_else(|| format!("piece {} is damaged", out.0.len() + 1))?;
        out.0.push(piece.oid);
        out.1.push(piece.offset as i64);
        out.2.push(piece.data);
        rest = &rest[piece.record_len()..];
    }
    Ok(out)
}

/// What V2 compares besides existence, count and size.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    /// Re-read every object and compare its SHA-256.
    pub deep: bool,
    /// Owners were restored (`--keep-owner`): compare them.
    pub owners: bool,
    /// Privileges were restored with their owners (`--keep-owner --keep-privileges`): compare
    /// ACLs (an ACL names its grantor, the owner, so it only matches when both were restored).
    pub privileges: bool,
}

/// A large object on the target.
struct LiveObject {
    owner: String,
    acl: Option<String>,
    comment: Option<String>,
    size: i64,
}

/// Every large object of the target with its size. The descriptors `lo_open` takes close when
/// the statement's transaction ends.
async fn live_objects(client: &Client) -> Result<BTreeMap<u32, LiveObject>> {
    let rows = client
        .query(
            "SELECT m.oid, pg_catalog.pg_get_userbyid(m.lomowner)::text, m.lomacl::text,
                    pg_catalog.obj_description(m.oid, 'pg_largeobject'),
                    pg_catalog.lo_lseek64(pg_catalog.lo_open(m.oid, $1), 0, 2)
             FROM pg_catalog.pg_largeobject_metadata m",
            &[&INV_READ],
        )
        .await
        .map_err(|e| db_error("listing large objects", &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                LiveObject {
                    owner: r.get(1),
                    acl: r.get(2),
                    comment: r.get(3),
                    size: r.get(4),
                },
            )
        })
        .collect())
}

/// SHA-256 of every target object: first pieces in one streamed query (one round trip for any
/// number of small objects), then the rest of longer objects piece by piece.
async fn live_sha256s(client: &Client) -> Result<BTreeMap<u32, String>> {
    let rows = client
        .query_raw(
            "SELECT m.oid, pg_catalog.lo_get(m.oid, 0, $1) \
             FROM pg_catalog.pg_largeobject_metadata m",
            &[&PIECE_BYTES],
        )
        .await
        .map_err(|e| db_error("reading large objects", &e))?;
    futures::pin_mut!(rows);
    let mut digests = BTreeMap::new();
    let mut longer = Vec::new();
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| db_error("reading large objects", &e))?;
        let oid: u32 = row.get(0);
        let data: &[u8] = row.get(1);
        let mut hasher = Sha256::new();
        hasher.update(data);
        if data.len() < PIECE_BYTES as usize {
            digests.insert(oid, hex::encode(hasher.finalize()));
        } else {
            longer.push((oid, hasher));
        }
    }
    for (oid, mut hasher) in longer {
        let mut offset = i64::from(PIECE_BYTES);
        loop {
            let row = read_piece(client, oid, offset).await?;
            let data: &[u8] = row.get(0);
            hasher.update(data);
            offset += data.len() as i64;
            if data.len() < PIECE_BYTES as usize {
                break;
            }
        }
        digests.insert(oid, hex::encode(hasher.finalize()));
    }
    Ok(digests)
}

/// V2: the target's large objects against the archive's (none when `meta` is absent): their
/// number, each one's presence and size, comment, owner and ACL when restored, and with `deep`
/// its content. Each difference names the object.
pub async fn compare(
    check: &mut TargetCheck,
    meta: Option<&LargeObjectsMeta>,
    client: &Client,
    options: CompareOptions,
) -> Result<()> {
    let archived = meta.map_or(&[][..], |m| &m.objects[..]);
    let live = live_objects(client).await?;
    let live_digests = if options.deep {
        live_sha256s(client).await?
    } else {
        BTreeMap::new()
    };
    check.compare(
        Kind::Count,
        "large objects",
        archived.len() as u64,
        live.len() as u64,
        |e, f| format!("the target has {f} large objects, the archive has {e}"),
    );
    for object in archived {
        let name = format!("large object {}", object.oid);
        let Some(found) = live.get(&object.oid) else {
            check.mismatch(
                Kind::Missing,
                &name,
                object.size,
                Value::Null,
                format!("{name} is missing (the archive has {} bytes)", object.size),
            );
            continue;
        };
        let size = found.size as u64;
        check.compare(Kind::Content, &name, object.size, size, |e, f| {
            format!("{name} has {f} bytes, the archive has {e}")
        });
        check.compare(
            Kind::Schema,
            &name,
            object.comment.clone(),
            found.comment.clone(),
            |_, _| format!("{name} has a different comment"),
        );
        if options.owners {
            check.compare(
                Kind::Schema,
                &name,
                object.owner.clone(),
                found.owner.clone(),
                |e, f| format!("{name} is owned by {f}, in the archive by {e}"),
            );
        }
        if options.privileges {
            check.compare(
                Kind::Schema,
                &name,
                object.acl.clone(),
                found.acl.clone(),
                |_, _| format!("{name} has different privileges"),
            );
        }
        if let Some(sha256) = live_digests
            .get(&object.oid)
            .filter(|_| size == object.size)
        {
            check.compare(
                Kind::Content,
                &name,
                object.sha256.clone(),
                sha256.clone(),
                |_, _| format!("{name}: its content differs from the archive"),
            );
        }
    }
    let known: std::collections::HashSet<u32> = archived.iter().map(|o| o.oid).collect();
    for (oid, found) in live.iter().filter(|(oid, _)| !known.contains(oid)) {
        check.mismatch(
            Kind::Schema,
            format!("large object {oid}"),
            Value::Null,
            found.size,
            format!("large object {oid} is not in the archive"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(pieces: &[LargeObjectPiece]) -> DecodedChunk {
        let mut data = Vec::new();
        pieces.iter().for_each(|p| p.write(&mut data));
        let mut digest = ContentDigest::new();
        RecordFormat::LargeObject
            .for_each_record(&data, |r| digest.add(r))
            .unwrap();
        DecodedChunk { data, digest }
    }

    #[test]
    fn pieces_parse_into_lo_put_arguments() {
        let piece = |oid, offset, data| LargeObjectPiece { oid, offset, data };
        let chunk = decoded(&[
            piece(16400, 0, b"hello"),
            piece(16401, 0, b""),
            piece(16400, 5, b"!"),
        ]);
        let (oids, offsets, data) = parse_pieces(&chunk).unwrap();
        assert_eq!(oids, [16400, 16401, 16400]);
        assert_eq!(offsets, [0, 0, 5]);
        assert_eq!(data, [&b"hello"[..], b"", b"!"]);

        let too_far = decoded(&[piece(1, u64::MAX, b"x")]);
        assert!(parse_pieces(&too_far).unwrap_err().contains("piece 1"));
    }
}
