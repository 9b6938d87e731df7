//! Fuzz targets, run by `cargo test` (proptest): the record decoder and the
//! index opener fed arbitrary bytes, and valid records and indexes with
//! bytes flipped, cut off or appended. Neither may panic or loop; the
//! decoder accepts a record (MAC checked) only if its head is intact, and
//! its buffers' checksums only if the buffers are; a damaged index opens
//! only if its checksummed header is intact, and lookups on it terminate.
//! The seed corpus is `seeds()`; proptest keeps the cases it ever failed on
//! in `proptest-regressions/storage/fuzz.txt` and replays them first.
use std::io::Write;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index as Pick;

use super::auth::MacKey;
use super::format::{self, decode};
use super::index::{Index, Slot, LIVE, MIN_CAP};
use super::{Deps, FileDep, Key, NewEntry, RecordDep};

const KEY: Key = *b"fuzz-key-0123456";

fn mac() -> MacKey {
    MacKey::new(&[7; 32])
}

/// A valid record of `payload_len` bytes of payload and `bufs` buffers.
fn record(payload_len: usize, bufs: usize) -> Vec<u8> {
    let payload = vec![0xAB; payload_len];
    let buffers: Vec<Vec<u8>> = (0..bufs)
        .map(|b| vec![b as u8 + 1; 100 + b * 5000])
        .collect();
    let refs: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
    let deps = Deps {
        files: vec![FileDep {
            path: "/data/in.csv".into(),
            size: 3,
            mtime_ns: -1,
            digest: [9; 16],
        }],
        record: vec![RecordDep {
            kind: "function".into(),
            name: "m.f".into(),
            display: Some("'x'".into()),
            digest: [3; 16],
        }],
        ..Deps::default()
    };
    let e = NewEntry {
        group: [1; 16],
        payload: &payload,
        buffers: &refs,
        deps: &deps,
        compute_ns: 5,
    };
    let layout = format::layout(&KEY, &e, 42);
    let total = layout.total_len as usize;
    let offsets: Vec<u64> = layout.buffer_offsets().collect();
    let sums: Vec<u128> = refs
        .iter()
        .map(|b| xxhash_rust::xxh3::xxh3_128(b))
        .collect();
    let head = layout.head(&payload, &sums, &mac());
    let mut rec = vec![0u8; total];
    rec[..head.len()].copy_from_slice(&head);
    for (off, b) in offsets.iter().zip(&refs) {
        rec[*off as usize..*off as usize + b.len()].copy_from_slice(b);
    }
    rec
}

/// Decodes `rec` with and without the MAC: no panic, every range inside
/// `rec`; with the MAC, acceptance only if the record is `intact`'s.
fn check_decode(rec: &[u8], intact: Option<&[u8]>) -> Result<(), TestCaseError> {
    if let Ok(d) = decode(rec, &KEY, Some(&mac())) {
        let Some(orig) = intact else {
            return Err(TestCaseError::fail("arbitrary bytes passed the MAC"));
        };
        prop_assert_eq!(rec.len(), orig.len());
        prop_assert_eq!(
            &rec[..d.payload.end],
            &orig[..d.payload.end],
            "head changed"
        );
        if d.check_buffers(rec).is_ok() {
            for (r, _) in &d.buffers {
                prop_assert_eq!(&rec[r.clone()], &orig[r.clone()], "a damaged buffer passed");
            }
        }
    }
    if let Ok(d) = decode(rec, &KEY, None) {
        prop_assert!(d.payload.end <= rec.len() && d.meta.end <= rec.len());
        for (r, _) in &d.buffers {
            prop_assert!(r.start <= r.end && r.end <= rec.len());
        }
        let _ = d.check_buffers(rec);
        prop_assert!(d.record.end <= rec.len());
        let _ = format::meta(rec, &d);
        let _ = format::record(rec, &d);
        let _ = format::deps(rec, &d);
    }
    Ok(())
}

/// One damage: flip a byte (anywhere, or in the first 512 bytes where the
/// header and metadata live), cut the tail, append bytes, overwrite an
/// aligned word with a boundary value, or make the length field match the
/// (changed) length.
fn damage(mut rec: Vec<u8>, (at, x, how): (Pick, u8, u8)) -> Vec<u8> {
    if rec.is_empty() {
        return vec![x];
    }
    let len = rec.len();
    let i = at.index(len);
    match how {
        0 => rec[i] ^= x.max(1),
        1 => rec[i % 512 % len] ^= x.max(1),
        2 => rec.truncate(i),
        3 => rec.extend(std::iter::repeat_n(x, i % 97 + 1)),
        4 if len >= 8 => {
            let w = (i % 64 * 8).min(len - 8);
            let values = [
                0,
                1,
                4096,
                len as u64,
                len as u64 + 4096,
                u64::from(u32::MAX),
                u64::MAX,
            ];
            let v = values[usize::from(x) % values.len()];
            rec[w..w + 8].copy_from_slice(&v.to_le_bytes());
        }
        _ if len >= 32 => rec[24..32].copy_from_slice(&(len as u64).to_le_bytes()),
        _ => rec[i] ^= x.max(1),
    }
    rec
}

fn damage_strategy() -> impl Strategy<Value = Vec<(Pick, u8, u8)>> {
    vec((any::<Pick>(), any::<u8>(), 0u8..6), 1..6)
}

/// Opens an index file holding `bytes`; if it opens, lookups, inserts and
/// scans terminate.
fn check_index(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut f = tempfile::tempfile().map_err(|e| TestCaseError::fail(e.to_string()))?;
    f.write_all(bytes)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let meta = f
        .metadata()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    if let Ok(ix) = Index::open(&f, &meta) {
        for k in 0..8u8 {
            let _ = ix.lookup(&[k; 16]);
            let _ = ix.find_insert(&[k; 16]);
        }
        let _ = ix.live().count();
    }
    Ok(())
}

/// A valid index with a few entries, as file bytes.
fn index_bytes() -> Vec<u8> {
    let f = tempfile::tempfile().expect("tempfile");
    let ix = Index::init(&f, MIN_CAP).expect("init");
    for k in 0..20u8 {
        let slot = Slot {
            key: [k; 16],
            state: LIVE,
            seg: 1,
            compute_us: 3,
            offset: u64::from(k) * 64,
            len: 64,
        };
        if let Some((i, _)) = ix.find_insert(&slot.key) {
            ix.write(i, &slot, 0, 0.0);
        }
    }
    drop(ix);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut out).expect("read");
    out
}

/// The seed corpus: valid records of every shape, cut at every boundary.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new(), vec![0; 64], b"BYTCREC1".to_vec()];
    for (p, b) in [(0, 0), (1, 0), (300, 0), (0, 1), (17, 2)] {
        let rec = record(p, b);
        for cut in [8, 12, 16, 24, 32, 63, 64, 65, 100, rec.len() - 1] {
            out.push(rec[..cut.min(rec.len())].to_vec());
        }
        out.push(rec);
    }
    out
}

#[test]
fn seed_corpus() {
    for rec in seeds() {
        check_decode(&rec, None)
            .or_else(|_| check_decode(&rec, Some(&rec)))
            .expect("seed");
        check_index(&rec).expect("seed as index");
    }
    for (p, b) in [(0, 0), (300, 0), (17, 2)] {
        let rec = record(p, b);
        let d = decode(&rec, &KEY, Some(&mac())).expect("a valid record decodes");
        d.check_buffers(&rec).expect("its buffers match");
    }
    check_index(&index_bytes()).expect("valid index");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoder_on_arbitrary_bytes(rec in vec(any::<u8>(), 0..2048)) {
        check_decode(&rec, None)?;
    }

    #[test]
    fn decoder_on_damaged_records(
        shape in (0usize..400, 0usize..3),
        edits in damage_strategy(),
    ) {
        let orig = record(shape.0, shape.1);
        let rec = edits.into_iter().fold(orig.clone(), damage);
        check_decode(&rec, Some(&orig))?;
    }

    #[test]
    fn index_opener_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..10_000)) {
        check_index(&bytes)?;
    }

    #[test]
    fn index_opener_on_damaged_indexes(edits in damage_strategy(), words in vec((0usize..8192, any::<u64>()), 0..8)) {
        let mut bytes = index_bytes();
        for (w, v) in words {
            let at = (w * 8) % bytes.len();
            bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        let bytes = edits.into_iter().fold(bytes, damage);
        check_index(&bytes)?;
    }
}
