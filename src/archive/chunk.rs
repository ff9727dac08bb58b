//! Chunks: bounded groups of whole records, compressed into one member each.
//!
//! A dump streams records into a [`ChunkBuilder`]; when the chunk reaches its target size it is
//! taken ([`ChunkBuilder::take`]), encoded on a worker thread ([`RawChunk::encode`]) and sent
//! to the writer. Memory therefore stays at a few chunks per worker whatever the table size.
//! [`decode`] is the way back: decompress (bounded by the manifest's raw size, so a forged member
//! cannot inflate without limit) and re-count records, for restore and for V1 verification.

use std::sync::{Arc, Mutex};

use super::codec::{Codec, Compression};
use super::crypt::Sealer;
use super::digest::ContentDigest;
use super::manifest::ChunkEntry;
use super::writer::Member;
use crate::error::{Error, Result};

/// How a backup encodes its chunks: the codec and level (and, for an encrypted archive, the
/// recipients every member is sealed to). Cheap to clone into every worker.
#[derive(Debug, Clone, Default)]
pub struct Encoding {
    pub compression: Compression,
    /// Encrypts every chunk after compressing it (an encrypted archive).
    pub seal: Option<Arc<Sealer>>,
}

impl Encoding {
    /// Chunks compressed with `compression`, not encrypted.
    pub fn new(compression: Compression) -> Encoding {
        Encoding {
            compression,
            seal: None,
        }
    }
}

/// Uncompressed bytes per chunk. Measured on 133 MiB of COPY text with two workers (bench/pg.sh,
/// scale 0.2): 4, 8 and 16 MiB back up equally fast (1.6 s); peak RSS is ~47, ~78 and ~103 MiB.
/// 8 MiB keeps per-COPY overhead on restore low while staying well under 100 MiB.
pub const DEFAULT_CHUNK_BYTES: usize = 8 << 20;

/// How records are framed inside a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordFormat {
    /// PostgreSQL COPY text: each record is one line ending in `\n` (data never contains a raw
    /// newline; COPY escapes it).
    CopyText,
    /// Concatenated raw BSON documents, each starting with its little-endian i32 length
    /// (mongodump's `.bson` layout).
    Bson,
    /// PostgreSQL large-object data: each record is one bounded piece of one large object, a
    /// [`LargeObjectPiece`] header (OID, offset, length) followed by the bytes. Not a table's
    /// rows: restore writes it with `lo_put`, never COPY.
    LargeObject,
}

impl RecordFormat {
    /// The member file extension before the codec's suffix.
    pub fn extension(self) -> &'static str {
        match self {
            RecordFormat::CopyText => "copy",
            RecordFormat::Bson => "bson",
            RecordFormat::LargeObject => "lo",
        }
    }

    /// Calls `f` with every record of a complete chunk, as its digest sees it (COPY lines without
    /// their `\n`, BSON documents and large-object pieces whole), and returns how many there
    /// were. A trailing partial record is an error.
    pub fn for_each_record(self, data: &[u8], mut f: impl FnMut(&[u8])) -> Result<u64, String> {
        let mut count = 0u64;
        match self {
            RecordFormat::CopyText => {
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', data) {
                    f(&data[start..end]);
                    count += 1;
                    start = end + 1;
                }
                if start != data.len() {
                    return Err(format!(
                        "{} bytes after the last complete line",
                        data.len() - start
                    ));
                }
            }
            RecordFormat::Bson => {
                let mut rest = data;
                while !rest.is_empty() {
                    let len = bson_length(rest)
                        .ok_or_else(|| format!("bad BSON document length at record {count}"))?;
                    f(&rest[..len]);
                    count += 1;
                    rest = &rest[len..];
                }
            }
            RecordFormat::LargeObject => {
                let mut rest = data;
                while !rest.is_empty() {
                    let piece = LargeObjectPiece::parse(rest)
                        .ok_or_else(|| format!("bad large-object piece at record {count}"))?;
                    let len = piece.record_len();
                    f(&rest[..len]);
                    count += 1;
                    rest = &rest[len..];
                }
            }
        }
        Ok(count)
    }
}

/// One piece of a PostgreSQL large object as a [`RecordFormat::LargeObject`] record holds it:
/// a 16-byte little-endian header (`u32` OID, `u64` offset in the object, `u32` length), then
/// `length` bytes. Binary, so the archive stores an object's bytes once, not as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargeObjectPiece<'a> {
    pub oid: u32,
    pub offset: u64,
    pub data: &'a [u8],
}

impl<'a> LargeObjectPiece<'a> {
    const HEADER: usize = 16;

    /// Appends the record to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.oid.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        let len = u32::try_from(self.data.len()).expect("a piece is far below 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(self.data);
    }

    /// The piece at the start of `data`, if its header is complete and its bytes are there.
    pub fn parse(data: &'a [u8]) -> Option<LargeObjectPiece<'a>> {
        let header = data.get(..Self::HEADER)?;
        let oid = u32::from_le_bytes(header[..4].try_into().ok()?);
        let offset = u64::from_le_bytes(header[4..12].try_into().ok()?);
        let len = u32::from_le_bytes(header[12..16].try_into().ok()?) as usize;
        let data = data.get(Self::HEADER..Self::HEADER.checked_add(len)?)?;
        Some(LargeObjectPiece { oid, offset, data })
    }

    /// The record's length, header included.
    pub fn record_len(&self) -> usize {
        Self::HEADER + self.data.len()
    }
}

/// The length of the BSON document at the start of `data`, if it is plausible and complete.
fn bson_length(data: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let len = i32::from_le_bytes(prefix);
    // The smallest document is 5 bytes: the length and the terminating NUL.
    let len = usize::try_from(len).ok().filter(|&l| l >= 5)?;
    (len <= data.len() && data[len - 1] == 0).then_some(len)
}

/// Chunk buffers whose records were compressed, kept for the next chunk (at most
/// [`SPARE_BUFFERS`]). Every chunk needs a buffer of about the chunk size; reusing them keeps
/// their pages instead of handing them back to the allocator, whose per-thread arenas then
/// hold several freed chunk buffers each (peak RSS grew with the threads that ever encoded a
/// chunk), or taking fresh pages from the system for every chunk (page faults: a quarter more
/// CPU for a MongoDB dump). Sized for two workers with a chunk in the builder and one in flight
/// each; more workers simply allocate the rest.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
const SPARE_BUFFERS: usize = 4;

/// A cleared buffer of at least `capacity` bytes: a spare one if there is one.
fn buffer(capacity: usize) -> Vec<u8> {
    let spare = {
        let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        let fits = spare.iter().position(|b| b.capacity() >= capacity);
        fits.map(|i| spare.swap_remove(i))
    };
    spare.unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Keeps `buffer` for a later chunk, or frees it when enough are kept already.
fn recycle(mut buffer: Vec<u8>) {
    buffer.clear();
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() < SPARE_BUFFERS {
        spare.push(buffer);
    }
}

/// Accumulates whole records up to a target size.
#[derive(Debug)]
pub struct ChunkBuilder {
    format: RecordFormat,
    target_bytes: usize,
    data: Vec<u8>,
    digest: ContentDigest,
}

impl ChunkBuilder {
    pub fn new(format: RecordFormat, target_bytes: usize) -> ChunkBuilder {
        ChunkBuilder {
            format,
            target_bytes: target_bytes.max(1),
            data: Vec::new(),
            digest: ContentDigest::new(),
        }
    }

    /// Appends one complete record. For COPY text that is one line *with* its `\n`; for BSON one
    /// whole document; for large objects one whole piece. The caller guarantees completeness (a dump splits its stream on record
    /// boundaries first); the digest is computed here, over the same bytes [`decode`] will see.
    pub fn push_record(&mut self, record: &[u8]) {
        if self.data.capacity() == 0 {
            // One buffer per chunk: the chunk is full shortly after the target anyway.
            self.data = buffer(self.target_bytes + self.target_bytes / 8);
        }
        match self.format {
            RecordFormat::CopyText => {
                debug_assert!(record.ends_with(b"\n"));
                self.digest.add(&record[..record.len().saturating_sub(1)]);
            }
            RecordFormat::Bson | RecordFormat::LargeObject => self.digest.add(record),
        }
        self.data.extend_from_slice(record);
    }

    /// True once the chunk has reached its target size and should be taken.
    pub fn is_full(&self) -> bool {
        self.data.len() >= self.target_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.digest.count() == 0
    }

    /// The records so far as a chunk, leaving the builder empty; `None` when there are none.
    pub fn take(&mut self) -> Option<RawChunk> {
        if self.is_empty() {
            return None;
        }
        let digest = std::mem::take(&mut self.digest);
        Some(RawChunk {
            format: self.format,
            data: std::mem::take(&mut self.data),
            digest,
        })
    }
}

/// An uncompressed chunk of whole records.
#[derive(Debug)]
pub struct RawChunk {
    pub format: RecordFormat,
    pub data: Vec<u8>,
    pub digest: ContentDigest,
}

impl RawChunk {
    pub fn rows(&self) -> u64 {
        self.digest.count()
    }

    /// Compresses (and, for an encrypted archive, encrypts) the chunk into a member named
    /// `name`, hashing it with SHA-256: the expensive part, meant to run on a worker thread,
    /// not the writer's.
    pub fn encode(self, name: String, encoding: &Encoding) -> Result<CompressedChunk> {
        let codec = encoding.compression.codec;
        let (rows, raw_bytes, digest) = (self.rows(), self.data.len() as u64, self.digest);
        let mut packed = encoding
            .compression
            .compress(&self.data)
            .map_err(|e| Error::io(format!("compressing archive member {name}"), e))?;
        // zstd allocates its worst case (about the input's size) and fills a quarter of it.
        packed.shrink_to_fit();
        // The records are not needed any more: handed back before sealing makes its own copy,
        // so a worker holds at most one chunk's records at a time.
        recycle(self.data);
        let member = match &encoding.seal {
            Some(sealer) => {
                let sealed = sealer
                    .seal(&packed)
                    .map_err(|e| Error::io(format!("encrypting archive member {name}"), e))?;
                drop(packed);
                Member::sealed(name, sealed)
            }
            None => Member::new(name, packed),
        };
        crate::progress::chunk(rows, raw_bytes);
        Ok(CompressedChunk {
            rows,
            raw_bytes,
            digest,
            codec,
            member,
        })
    }
}

/// A compressed chunk, ready for the writer, with what the manifest records about it.
#[derive(Debug)]
pub struct CompressedChunk {
    pub member: Member,
    pub rows: u64,
    pub raw_bytes: u64,
    pub digest: ContentDigest,
    pub codec: Codec,
}

impl CompressedChunk {
    /// What the manifest records about this chunk.
    pub fn entry(&self) -> ChunkEntry {
        let member = self.member.entry();
        ChunkEntry {
            member: member.name,
            rows: self.rows,
            raw_bytes: self.raw_bytes,
            size: member.size,
            sha256: member.sha256,
            codec: self.codec,
        }
    }
}

/// A chunk as read back from an archive.
#[derive(Debug)]
pub struct DecodedChunk {
    pub data: Vec<u8>,
    pub digest: ContentDigest,
}

impl DecodedChunk {
    pub fn rows(&self) -> u64 {
        self.digest.count()
    }
}

/// Decompresses one member of `codec` that should hold exactly `raw_bytes` bytes of `format`
/// records, and recomputes their count and digest. Refuses to inflate past `raw_bytes`.
pub fn decode(
    packed: &[u8],
    codec: Codec,
    raw_bytes: u64,
    format: RecordFormat,
) -> Result<DecodedChunk, String> {
    let data = codec.decompress(packed, raw_bytes)?;
    if data.len() as u64 != raw_bytes {
        return Err(format!(
            "decompresses to {}{} bytes, the manifest says {raw_bytes}",
            data.len(),
            if data.len() as u64 > raw_bytes {
                "+"
            } else {
                ""
            }
        ));
    }
    let mut digest = ContentDigest::new();
    format.for_each_record(&data, |record| digest.add(record))?;
    crate::progress::chunk(digest.count(), raw_bytes);
    Ok(DecodedChunk { data, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cut_on_record_boundaries_and_round_trip() {
        let mut builder = ChunkBuilder::new(RecordFormat::CopyText, 20);
        let mut chunks = Vec::new();
        for i in 0..10 {
            builder.push_record(format!("{i}\tname {i}\n").as_bytes());
            if builder.is_full() {
                chunks.push(builder.take().unwrap());
            }
        }
        chunks.extend(builder.take());
        assert!(builder.take().is_none());
        assert!(chunks.len() > 2);
        assert_eq!(chunks.iter().map(RawChunk::rows).sum::<u64>(), 10);

        for (i, chunk) in chunks.into_iter().enumerate() {
            let rows = chunk.rows();
            let digest = chunk.digest;
            let raw_len = chunk.data.len() as u64;
            let codec = [Codec::Zstd, Codec::Gzip, Codec::None][i % 3];
            let encoding = Encoding::new(Compression::new(codec, None).unwrap());
            let compressed = chunk.encode(format!("c{i}"), &encoding).unwrap();
            assert_eq!(compressed.rows, rows);
            assert_eq!(compressed.entry().codec, codec);
            let decoded = decode(
                compressed.member.data(),
                codec,
                raw_len,
                RecordFormat::CopyText,
            )
            .unwrap();
            assert_eq!(decoded.rows(), rows);
            assert_eq!(decoded.digest, digest);
        }
    }

    #[test]
    fn a_reused_chunk_buffer_starts_empty() {
        let encoding = Encoding::default();
        for round in 0..2 * SPARE_BUFFERS {
            let mut builder = ChunkBuilder::new(RecordFormat::CopyText, 64);
            let record = format!("{round}\tround {round}\n");
            builder.push_record(record.as_bytes());
            let chunk = builder.take().unwrap();
            // Whatever buffer the builder got (new or handed back by the previous round's
            // encode), it holds this round's record and nothing else.
            assert_eq!(chunk.data, record.as_bytes());
            assert!(chunk.data.capacity() >= 64);
            chunk.encode(format!("c{round}"), &encoding).unwrap();
        }
        assert!(SPARE.lock().unwrap().len() <= SPARE_BUFFERS);
    }

    #[test]
    fn decode_refuses_lies_about_size_and_damage() {
        let mut builder = ChunkBuilder::new(RecordFormat::CopyText, 1 << 20);
        builder.push_record(b"a\tb\n");
        let chunk = builder.take().unwrap();
        let zst = chunk
            .encode("m".into(), &Encoding::default())
            .unwrap()
            .member
            .data()
            .to_vec();
        let zstd = Codec::Zstd;
        assert!(decode(&zst, zstd, 3, RecordFormat::CopyText).is_err());
        assert!(decode(&zst, zstd, 5, RecordFormat::CopyText).is_err());
        assert!(decode(&zst[..zst.len() - 4], zstd, 4, RecordFormat::CopyText).is_err());
        assert!(decode(b"not zstd", zstd, 4, RecordFormat::CopyText).is_err());
        // The same bytes read as another codec are damage, not data.
        assert!(decode(&zst, Codec::Gzip, 4, RecordFormat::CopyText).is_err());
    }

    #[test]
    fn bson_framing_counts_documents_and_rejects_garbage() {
        // {} is 5 bytes: length 5, terminating NUL.
        let empty_doc = [5u8, 0, 0, 0, 0];
        let mut two = empty_doc.to_vec();
        two.extend_from_slice(&empty_doc);
        assert_eq!(RecordFormat::Bson.for_each_record(&two, |_| {}), Ok(2));
        assert!(RecordFormat::Bson
            .for_each_record(&two[..7], |_| {})
            .is_err());
        assert!(RecordFormat::Bson
            .for_each_record(&[255, 255, 255, 255, 0], |_| {})
            .is_err());
        assert!(RecordFormat::CopyText
            .for_each_record(b"a\nb", |_| {})
            .is_err());
    }

    #[test]
    fn large_object_pieces_frame_binary_bytes() {
        let mut data = Vec::new();
        let pieces = [
            LargeObjectPiece {
                oid: 16400,
                offset: 0,
                data: b"with\nnewline\tand tab",
            },
            LargeObjectPiece {
                oid: 16401,
                offset: 0,
                data: b"",
            },
            LargeObjectPiece {
                oid: 16400,
                offset: 1 << 40,
                data: &[0, 255],
            },
        ];
        pieces.iter().for_each(|p| p.write(&mut data));
        let mut seen = Vec::new();
        let count = RecordFormat::LargeObject
            .for_each_record(&data, |r| {
                let p = LargeObjectPiece::parse(r).unwrap();
                assert_eq!(p.record_len(), r.len());
                seen.push((p.oid, p.offset, p.data.to_vec()));
            })
            .unwrap();
        assert_eq!(count, 3);
        let expected: Vec<_> = pieces
            .iter()
            .map(|p| (p.oid, p.offset, p.data.to_vec()))
            .collect();
        assert_eq!(seen, expected);
        assert!(RecordFormat::LargeObject
            .for_each_record(&data[..data.len() - 1], |_| {})
            .is_err());
        assert!(RecordFormat::LargeObject
            .for_each_record(&data[..10], |_| {})
            .is_err());
    }
}
