//! Any bytes given to the archive reader yield an error or a valid archive, never a panic, a
//! hang or an unbounded allocation; an accepted archive decodes (V1) without panicking either.
//! The proptests in tests/archive_format.rs and tests/faults_proptest.rs check the same property
//! on stable, in CI.
#![no_main]

use std::io::Write;

use dbkeeper::archive::reader::VerifiedArchive;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reader works on files (it reads members back by offset), so the input becomes one.
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("writing the input");
    if let Ok(archive) = VerifiedArchive::open(file.path()) {
        let _ = archive.verify_decode(1);
        for dataset in &archive.manifest().datasets {
            for chunk in &dataset.chunks {
                let _ = archive.read_chunk(dataset, chunk);
            }
        }
    }
});
