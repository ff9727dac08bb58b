//! Codecs: how a chunk's bytes are compressed inside its member.
//!
//! The codec is recorded per chunk in the manifest ([`super::ChunkEntry::codec`]), so one
//! reader handles archives of every codec; archives written before the field existed are gzip.
//! Every codec is a standard single-frame format that stock tools read: `zstd -d`, `gzip -d`,
//! or nothing at all for `none`.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// A chunk compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Codec {
    /// Zstandard, one frame per chunk (the default for new archives).
    #[default]
    Zstd,
    /// gzip, one member per chunk (every archive of format version 1).
    Gzip,
    /// Stored as is.
    None,
}

/// zstd level 1 measured fastest with a ratio close to gzip -6: see docs/performance.md.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;
/// gzip level 1: COPY text compresses ~4x and barely better at 6, for ~3x the CPU.
pub const DEFAULT_GZIP_LEVEL: i32 = 1;

impl Codec {
    /// What archives of format version 1 used, for manifests without a codec field.
    pub fn legacy() -> Codec {
        Codec::Gzip
    }

    /// The name used on the command line, in the config file and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
            Codec::None => "none",
        }
    }

    /// The member name suffix, dot included (empty for `none`).
    pub fn suffix(self) -> &'static str {
        match self {
            Codec::Zstd => ".zst",
            Codec::Gzip => ".gz",
            Codec::None => "",
        }
    }

    pub fn default_level(self) -> i32 {
        match self {
            Codec::Zstd => DEFAULT_ZSTD_LEVEL,
            Codec::Gzip => DEFAULT_GZIP_LEVEL,
            Codec::None => 0,
        }
    }

    /// The levels this codec accepts, for validation and messages. zstd's negative "fast"
    /// levels and its `--ultra` levels (20-22, hundreds of MiB of window) are left out.
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Codec::Zstd => 1..=19,
            Codec::Gzip => 0..=9,
            Codec::None => 0..=0,
        }
    }

    /// Parses `zstd`, `gzip` or `none`.
    pub fn parse(text: &str) -> Option<Codec> {
        [Codec::Zstd, Codec::Gzip, Codec::None]
            .into_iter()
            .find(|c| c.as_str() == text)
    }

    /// Compresses `data` at `level` into one self-contained frame. Encoders are finished
    /// explicitly, so an error writing a trailer is never lost.
    pub fn compress(self, data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::Zstd => zstd::bulk::compress(data, level),
            Codec::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 3 + 64),
                    flate2::Compression::new(level.clamp(0, 9) as u32),
                );
                encoder.write_all(data)?;
                encoder.finish()
            }
            Codec::None => Ok(data.to_vec()),
        }
    }

    /// Decompresses one frame that should hold exactly `expected` bytes, never producing more
    /// than `expected + 1` (so a forged member cannot inflate without limit).
    pub fn decompress(self, data: &[u8], expected: u64) -> Result<Vec<u8>, String> {
        let limit = usize::try_from(expected).map_err(|_| "chunk too large".to_string())?;
        let mut out = Vec::with_capacity(limit.min(256 << 20));
        let bound = expected.saturating_add(1);
        let read = match self {
            Codec::Zstd => zstd::stream::read::Decoder::with_buffer(data)
                .and_then(|d| d.single_frame().take(bound).read_to_end(&mut out))
                .map_err(|e| format!("zstd data is damaged: {e}")),
            Codec::Gzip => flate2::read::GzDecoder::new(data)
                .take(bound)
                .read_to_end(&mut out)
                .map_err(|e| format!("gzip data is damaged: {e}")),
            Codec::None => {
                out.extend_from_slice(&data[..data.len().min(limit.saturating_add(1))]);
                Ok(out.len())
            }
        };
        read?;
        Ok(out)
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A codec and its level, as chosen for one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub codec: Codec,
    pub level: i32,
}

impl Default for Compression {
    fn default() -> Compression {
        Compression::new(Codec::default(), None).expect("the default level is valid")
    }
}

impl Compression {
    /// `codec` at `level` (its default when `None`); an out-of-range level is an error that
    /// names the valid range.
    pub fn new(codec: Codec, level: Option<i32>) -> Result<Compression, String> {
        let level = level.unwrap_or_else(|| codec.default_level());
        if !codec.levels().contains(&level) {
            let range = codec.levels();
            return Err(match codec {
                Codec::None => format!(
                    "compression none takes no level (got {level}); drop the level or choose \
                     zstd or gzip"
                ),
                _ => format!(
                    "compression level {level} is out of range for {codec}: use {}-{}",
                    range.start(),
                    range.end()
                ),
            });
        }
        Ok(Compression { codec, level })
    }

    pub fn compress(&self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.codec.compress(data, self.level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_refuses_to_inflate_past_the_bound() {
        let data = b"1\tAda Lovelace\n2\tGrace Hopper\n".repeat(100);
        for codec in [Codec::Zstd, Codec::Gzip, Codec::None] {
            let packed = codec.compress(&data, codec.default_level()).unwrap();
            let len = data.len() as u64;
            assert_eq!(codec.decompress(&packed, len).unwrap(), data, "{codec}");
            // A manifest that understates the size gets one byte more than it said, not all.
            assert_eq!(codec.decompress(&packed, 10).unwrap().len(), 11, "{codec}");
        }
        assert!(Codec::Zstd.decompress(b"not zstd", 4).is_err());
        assert!(Codec::Gzip.decompress(b"not gzip", 4).is_err());
    }

    #[test]
    fn levels_are_checked_per_codec() {
        assert!(Compression::new(Codec::Zstd, Some(0)).is_err());
        assert!(Compression::new(Codec::Zstd, Some(19)).is_ok());
        assert!(Compression::new(Codec::Gzip, Some(10)).is_err());
        assert!(Compression::new(Codec::None, Some(3)).is_err());
        assert_eq!(Compression::default().codec, Codec::Zstd);
        assert_eq!(Codec::parse("gzip"), Some(Codec::Gzip));
        assert_eq!(Codec::parse("lz4"), None);
    }
}
