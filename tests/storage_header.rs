//! A damaged or hostile index header never disables the store: every
//! counter, flag and id word set to boundary values (and torn slots) still
//! leaves every entry readable, every new put stored and nothing evicted
//! (see "Header counters" in `src/storage/mod.rs`).
mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use _bytecache::storage::Store;
use common::{check_value, opts, put_value};

/// Header words (index.rs) and the values written into them.
const WORDS: [(u64, &str); 10] = [
    (8, "superseded"),
    (9, "epoch"),
    (10, "live"),
    (11, "tombstones"),
    (12, "bytes"),
    (13, "next file id"),
    (14, "active segment"),
    (16, "clock"),
    (17, "dirty"),
    (18, "secret id"),
];
const VALUES: [u64; 7] = [
    0,
    1,
    1 << 62,
    u64::MAX,
    0x7ff8_0000_0000_0000, // f64 NaN
    0xfff0_0000_0000_0000, // f64 -inf
    0x8000_0005,           // a file id with bit 31 set (a file of buffers)
];

fn poke(dir: &Path, word: u64, value: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("index"))
        .unwrap();
    f.write_all_at(&value.to_le_bytes(), word * 8).unwrap();
}

/// Stores 1..=`before`, applies `damage` to the closed store, then stores
/// up to `before + 760` (the index grows past its first capacity of 1024
/// slots on the way) and checks that they are all there (of the first
/// ones, those `damage` did not tear out of the index).
fn survives(
    what: &str,
    before: u64,
    damage: impl Fn(&Path),
    lost: impl Fn(u64) -> bool,
) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let (dir, secret) = (t.path().join("store"), t.path().join("secret"));
    let s = Store::open(&dir, opts(&secret)).unwrap();
    for i in 1..=before {
        put_value(&s, i);
    }
    drop(s);
    damage(&dir);
    let s = Store::open(&dir, opts(&secret)).unwrap();
    assert!(s.reset_reason().is_none(), "{what}: store emptied");
    let kept: Vec<u64> = (1..=before).filter(|&i| !lost(i)).collect();
    for &i in &kept {
        assert_eq!(check_value(&s, i), Some(true), "{what}: entry {i} lost");
    }
    let last = before + 760;
    for i in before + 1..=last {
        put_value(&s, i);
    }
    for &i in kept.iter().chain(&(before + 1..=last).collect::<Vec<_>>()) {
        assert_eq!(check_value(&s, i), Some(true), "{what}: entry {i}");
    }
    let stats = s.stats().unwrap();
    let n = kept.len() as u64 + 760;
    assert_eq!(stats.entries, n, "{what}");
    assert!(
        stats.bytes > n * 64 && stats.bytes < 64 << 20,
        "{what}: {stats:?}"
    );
    assert!(s.verify().unwrap().bad.is_empty(), "{what}");
    drop(s);
    let s = Store::open(&dir, opts(&secret)).unwrap();
    assert_eq!(check_value(&s, last), Some(true), "{what}: after reopening");
    t
}

#[test]
fn every_header_word_at_every_boundary_value() {
    for (word, name) in WORDS {
        for value in VALUES {
            let t = survives(
                &format!("{name} = {value:#x}"),
                40,
                |dir| poke(dir, word, value),
                |_| false,
            );
            // A superseded flag on the index in place would send every
            // reader to reopen it on every lookup: the writer clears it.
            assert_eq!(peek(&t.path().join("store"), 8), 0, "{name} = {value:#x}");
        }
    }
}

fn peek(dir: &Path, word: u64) -> u64 {
    let mut w = [0u8; 8];
    let f = std::fs::File::open(dir.join("index")).unwrap();
    f.read_exact_at(&mut w, word * 8).unwrap();
    u64::from_le_bytes(w)
}

#[test]
fn counters_that_agree_with_each_other_but_not_with_the_slots() {
    // live = bytes = 0 looks like an empty store: the index fills up to
    // its last slot before anything looks wrong.
    survives(
        "live = bytes = 0",
        300,
        |dir| {
            poke(dir, 10, 0);
            poke(dir, 12, 0);
        },
        |_| false,
    );
}

#[test]
fn slots_stuck_mid_update_without_the_dirty_flag() {
    // An odd sequence number reads as "being written" forever: the entry
    // in such a slot is gone, lookups skip it, and inserts that probe
    // through it must not give up.
    let torn = std::cell::RefCell::new(Vec::new());
    survives(
        "torn slots",
        40,
        |dir| {
            // Slots are 64 bytes after the 4096-byte header: seq, then key.
            let index = std::fs::read(dir.join("index")).unwrap();
            let stuck: Vec<u64> = (1..=40).filter(|i| i % 3 == 0).collect();
            for &i in &stuck {
                let at = (4096..index.len())
                    .step_by(64)
                    .find(|&at| index[at + 8..at + 24] == common::key(i))
                    .unwrap();
                poke(dir, at as u64 / 8, 1);
            }
            torn.replace(stuck);
        },
        |i| torn.borrow().contains(&i),
    );
}
