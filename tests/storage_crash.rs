//! Crash safety: (1) every intermediate file state a crash could leave
//! during an operation reopens cleanly and never yields a wrong value;
//! (2) real writer processes SIGKILLed at random instants.
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use _bytecache::storage::{Options, Store};
use common::{check_value, key, opts, put_value, restore, snapshot, spawn_child};

type Files = BTreeMap<PathBuf, Vec<u8>>;

/// One write a crash can interrupt: a byte of a file updated in place, or a
/// whole file replaced at once (written aside, then renamed over: atomic).
#[derive(Clone)]
enum Change {
    Byte(PathBuf, usize, u8),
    Replace(PathBuf, Vec<u8>),
}

/// The writes from `a` to `b`, data files first (write order), then
/// everything else; plus files that disappear. A non-data file whose length
/// changed (the index after a rebuild) was renamed into place.
fn changes(a: &Files, b: &Files) -> (Vec<Change>, Vec<PathBuf>) {
    let mut data = Vec::new();
    let mut other = Vec::new();
    for (p, new) in b {
        let old = a.get(p).map(Vec::as_slice).unwrap_or(&[]);
        if !p.starts_with("data") && a.contains_key(p) && old.len() != new.len() {
            other.push(Change::Replace(p.clone(), new.clone()));
            continue;
        }
        let sink = if p.starts_with("data") {
            &mut data
        } else {
            &mut other
        };
        for (i, &byte) in new.iter().enumerate() {
            if old.get(i).copied().unwrap_or(0) != byte {
                sink.push(Change::Byte(p.clone(), i, byte));
            }
        }
    }
    data.extend(other);
    let gone = a.keys().filter(|p| !b.contains_key(*p)).cloned().collect();
    (data, gone)
}

/// The files after applying the first `k` changes of `order` to `a` (files
/// that exist in `b` exist at their final length, zero-filled).
fn partial(a: &Files, b: &Files, order: &[Change], k: usize, gone: &[PathBuf]) -> Files {
    let mut s = a.clone();
    for (p, new) in b {
        if a.contains_key(p)
            && order
                .iter()
                .any(|c| matches!(c, Change::Replace(q, _) if q == p))
        {
            continue; // replaced whole, below
        }
        let f = s.entry(p.clone()).or_default();
        f.resize(f.len().max(new.len()), 0);
    }
    for c in &order[..k] {
        match c {
            Change::Byte(p, i, byte) => s.get_mut(p).unwrap()[*i] = *byte,
            Change::Replace(p, content) => {
                s.insert(p.clone(), content.clone());
            }
        }
    }
    if k == order.len() {
        for p in gone {
            s.remove(p);
        }
    }
    s
}

/// A store operation whose every crash state is checked.
struct Op {
    name: &'static str,
    /// The key it writes or removes (its value may be old, new or missing).
    key: u64,
    run: Box<dyn Fn(&Store)>,
    /// It may evict entries: any key may be missing afterwards, none wrong.
    evicts: bool,
}

/// Runs each op on the store in `dir` and checks every state a crash during
/// it could leave (in write order and, for power loss without fsync, in
/// reverse): the store reopens, no key has a wrong value, committed keys the
/// op does not touch are all there, and the store keeps working. Returns the
/// number of states checked.
fn check_crash_states(
    dir: &std::path::Path,
    o: &dyn Fn() -> Options,
    mut present: Vec<u64>,
    ops: Vec<Op>,
) -> usize {
    let scratch = dir.with_extension("scratch");
    let mut states = 0;
    for op in ops {
        let before = snapshot(dir);
        {
            let s = Store::open(dir, o()).unwrap();
            (op.run)(&s);
        }
        let after = snapshot(dir);
        let survivors: Vec<u64> = {
            let s = Store::open(dir, o()).unwrap();
            present
                .iter()
                .copied()
                .filter(|&i| check_value(&s, i) == Some(true))
                .collect()
        };
        let (mut order, gone) = changes(&before, &after);
        assert!(!order.is_empty(), "{} changed nothing", op.name);
        for reorder in [false, true] {
            if reorder {
                // Power loss without fsync: the index may hit the disk first.
                order.reverse();
            }
            // Every write point near both ends (where the index and record
            // headers change), evenly spaced points through bulk bytes.
            let len = order.len();
            let stride = (len / 200).max(1);
            let points = (0..=len).filter(|&n| n < 100 || n + 100 > len || n % stride == 0);
            for n in points {
                restore(&scratch, &partial(&before, &after, &order, n, &gone));
                let s = Store::open(&scratch, o()).unwrap();
                for &i in present.iter().chain([&op.key]) {
                    let got = check_value(&s, i);
                    assert_ne!(
                        got,
                        Some(false),
                        "{}: wrong value for {i} at {n}/{len}",
                        op.name
                    );
                    // A key the op leaves alone must survive, except that
                    // evictions moved without fsync may lose what they move.
                    let must = i != op.key
                        && present.contains(&i)
                        && (!op.evicts || (survivors.contains(&i) && !reorder));
                    if must {
                        assert_eq!(
                            got,
                            Some(true),
                            "{}: committed key {i} lost at {n}/{len} (reorder {reorder})",
                            op.name
                        );
                    }
                }
                // The store keeps working after the crash.
                put_value(&s, 99_999);
                assert_eq!(check_value(&s, 99_999), Some(true));
                states += 1;
            }
        }
        present = survivors;
        if op.name.starts_with("remove") {
            present.retain(|&i| i != op.key);
        } else if !present.contains(&op.key) {
            present.push(op.key);
        }
    }
    states
}

#[test]
fn every_write_point_of_put_and_remove() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    let dir = t.path().join("store");
    let s = Store::open(&dir, opts(&secret)).unwrap();
    for i in 1..=20 {
        put_value(&s, i);
    }
    drop(s);
    let op = |name, key, run: Box<dyn Fn(&Store)>| Op {
        name,
        key,
        run,
        evicts: false,
    };
    let ops = vec![
        op("put small", 21, Box::new(|s| put_value(s, 21))),
        op("put with buffer", 25, Box::new(|s| put_value(s, 25))),
        op("replace", 3, Box::new(|s| put_value(s, 3))),
        op(
            "remove small",
            4,
            Box::new(|s| assert!(s.remove(&key(4)).unwrap())),
        ),
        op(
            "remove big",
            10,
            Box::new(|s| assert!(s.remove(&key(10)).unwrap())),
        ),
    ];
    let states = check_crash_states(&dir, &|| opts(&secret), (1..=20).collect(), ops);
    assert!(states > 500, "only {states} crash states checked");
}

/// The index rebuilt into a larger file (growth), and puts that evict and
/// compact segments (a tiny `max_bytes`).
#[test]
fn every_write_point_of_growth_eviction_and_compaction() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    let dir = t.path().join("store");
    // 768 entries fill the smallest index (1024 slots) to its 3/4 bound.
    let s = Store::open(&dir, opts(&secret)).unwrap();
    for i in 1..=768 {
        put_value(&s, i);
    }
    drop(s);
    let grow = Op {
        name: "put growing the index",
        key: 769,
        run: Box::new(|s| put_value(s, 769)),
        evicts: false,
    };
    let before = std::fs::metadata(dir.join("index")).unwrap().len();
    let states = check_crash_states(&dir, &|| opts(&secret), (1..=768).collect(), vec![grow]);
    assert!(
        std::fs::metadata(dir.join("index")).unwrap().len() > before,
        "no growth"
    );
    assert!(states > 200, "only {states} crash states checked");

    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    let dir = t.path().join("store");
    let small = || Options {
        max_bytes: 8_000,
        ..opts(&secret)
    };
    let s = Store::open(&dir, small()).unwrap();
    let mut present = Vec::new();
    for i in 1..=60 {
        if i % 5 != 0 {
            put_value(&s, i); // small records only: they share segments
            present.push(i);
        }
    }
    let live: Vec<u64> = present
        .iter()
        .copied()
        .filter(|&i| check_value(&s, i) == Some(true))
        .collect();
    drop(s);
    let ops = (61..=64)
        .map(|k| Op {
            name: "put evicting and compacting",
            key: k,
            run: Box::new(move |s| put_value(s, k)),
            evicts: true,
        })
        .collect();
    let states = check_crash_states(&dir, &small, live.clone(), ops);
    assert!(states > 200, "only {states} crash states checked");
    let s = Store::open(&dir, small()).unwrap();
    let kept = live
        .iter()
        .filter(|&&i| check_value(&s, i) == Some(true))
        .count();
    assert!(
        kept < live.len(),
        "nothing was evicted ({kept} of {} kept)",
        live.len()
    );
}

const CHILD_ENV: &str = "BYTECACHE_TEST_WRITER";

/// Child side of the SIGKILL test: put keys from START upwards forever,
/// printing "@C <i>" after each put returns.
#[test]
fn sigkill_child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (dir, secret, start) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut o = opts(std::path::Path::new(secret));
    if let Some(max) = parts.next() {
        o.max_bytes = max.parse().unwrap();
    }
    let s = Store::open(dir, o).unwrap();
    let mut i: u64 = start.parse().unwrap();
    loop {
        put_value(&s, i);
        if i % 17 == 0 {
            s.remove(&key(i - 1)).unwrap();
        }
        println!("@C {i}");
        i += 1;
    }
}

#[test]
fn sigkill_writer_loop() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    let dir = t.path().join("store");
    drop(Store::open(&dir, opts(&secret)).unwrap());
    let mut next = 1u64;
    let mut removed = std::collections::HashSet::new();
    let mut in_flight = Vec::new();
    let mut seed = 0x1234_5678_u64;
    for round in 0..20 {
        let spec = format!("{}|{}|{next}", dir.display(), secret.display());
        let mut child = spawn_child("sigkill_child_writer", &[(CHILD_ENV, spec)]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 80));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut last: Option<u64> = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(n) = line.split("@C ").nth(1) {
                last = Some(n.parse::<u64>().unwrap());
            }
        }
        let s = Store::open(&dir, opts(&secret)).unwrap();
        let Some(last) = last else { continue };
        for i in next..=last {
            if i % 17 == 0 {
                removed.insert(i - 1);
            }
        }
        // The put (and remove) in flight when killed: done or not, never torn.
        in_flight.push(last + 1);
        if (last + 1) % 17 == 0 {
            in_flight.push(last);
        }
        for i in 1..=last {
            let got = check_value(&s, i);
            if in_flight.contains(&i) {
                assert_ne!(
                    got,
                    Some(false),
                    "round {round}: wrong value for in-flight key {i}"
                );
            } else if removed.contains(&i) {
                assert_eq!(got, None, "round {round}: removed key {i} is back");
            } else {
                assert_eq!(
                    got,
                    Some(true),
                    "round {round}: committed key {i} lost or wrong"
                );
            }
        }
        assert_ne!(check_value(&s, last + 1), Some(false));
        assert!(s.verify().unwrap().bad.is_empty(), "round {round}");
        next = last + 2;
    }
    assert!(next > 100, "children committed too little ({next})");
}

/// SIGKILL during constant eviction and compaction (tiny max_bytes): the
/// store always reopens within its bound and never returns a wrong value.
#[test]
fn sigkill_writer_loop_evicting() {
    const MAX: u64 = 200_000;
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    let dir = t.path().join("store");
    let o = || common::Options {
        max_bytes: MAX,
        ..opts(&secret)
    };
    drop(Store::open(&dir, o()).unwrap());
    let mut next = 1u64;
    for round in 0..12u64 {
        let spec = format!("{}|{}|{next}|{MAX}", dir.display(), secret.display());
        let mut child = spawn_child("sigkill_child_writer", &[(CHILD_ENV, spec)]);
        std::thread::sleep(Duration::from_millis(30 + round * 7));
        child.kill().unwrap();
        child.wait().unwrap();
        let last = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .filter_map(|l| {
                l.unwrap()
                    .split("@C ")
                    .nth(1)
                    .map(|n| n.parse::<u64>().unwrap())
            })
            .last()
            .unwrap_or(next);
        let s = Store::open(&dir, o()).unwrap();
        s.gc().unwrap();
        assert!(s.stats().unwrap().bytes <= MAX, "round {round}");
        for i in 1..=last + 1 {
            assert_ne!(
                check_value(&s, i),
                Some(false),
                "round {round}: wrong value for {i}"
            );
        }
        assert!(s.verify().unwrap().bad.is_empty(), "round {round}");
        next = last + 2;
    }
    assert!(next > 100, "children committed too little ({next})");
}
