//! 4 processes x 2 threads doing mixed puts, gets and removes on one store
//! (with segment rollover and index rebuilds happening under them); every
//! value read is checked, and afterwards every committed write is present.
mod common;

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use _bytecache::storage::Store;
use common::{check_value, key, opts, put_value, spawn_child};

const CHILD_ENV: &str = "BYTECACHE_TEST_MIXED";
const SHARED: u64 = 300;
const OPS: u64 = 1500;

fn own_key(proc_: u64, thread: u64, n: u64) -> u64 {
    1_000_000 + proc_ * 100_000 + thread * 10_000 + n
}

#[test]
fn mixed_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (dir, secret, proc_) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let proc_: u64 = proc_.parse().unwrap();
    let s = Arc::new(Store::open(dir, opts(std::path::Path::new(secret))).unwrap());
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (proc_ << 8 | t);
                let (mut wrong, mut hits, mut own) = (0, 0, 0);
                for _ in 0..OPS {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let k = (rng >> 8) % SHARED;
                    match rng % 10 {
                        0..=3 => put_value(&s, k),
                        4..=7 => match check_value(&s, k) {
                            Some(true) => hits += 1,
                            Some(false) => wrong += 1,
                            None => {}
                        },
                        8 => {
                            s.remove(&key(k)).unwrap();
                        }
                        _ => {
                            put_value(&s, own_key(proc_, t, own));
                            own += 1;
                        }
                    }
                }
                (wrong, hits, own)
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        let (wrong, hits, own) = h.join().unwrap();
        println!("@R {proc_} {t} {wrong} {hits} {own}");
    }
}

#[test]
fn four_processes_two_threads() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    let dir = t.path().join("store");
    drop(Store::open(&dir, opts(&secret)).unwrap());
    let children: Vec<_> = (0..4)
        .map(|p| {
            let spec = format!("{}|{}|{p}", dir.display(), secret.display());
            spawn_child("mixed_child", &[(CHILD_ENV, spec)])
        })
        .collect();
    let mut reports = Vec::new();
    for mut c in children {
        let out = BufReader::new(c.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(r) = line.split("@R ").nth(1) {
                let v: Vec<u64> = r.split(' ').map(|x| x.parse().unwrap()).collect();
                reports.push(v);
            }
        }
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(reports.len(), 8);
    let s = Store::open(&dir, opts(&secret)).unwrap();
    let mut committed = 0;
    for r in &reports {
        assert_eq!(
            r[2], 0,
            "process {} thread {} read wrong values",
            r[0], r[1]
        );
        for n in 0..r[4] {
            assert_eq!(
                check_value(&s, own_key(r[0], r[1], n)),
                Some(true),
                "lost write"
            );
            committed += 1;
        }
    }
    for k in 0..SHARED {
        assert_ne!(check_value(&s, k), Some(false));
    }
    assert!(committed > 500);
    assert!(
        reports.iter().map(|r| r[3]).sum::<u64>() > 100,
        "too few shared hits to mean anything"
    );
    let v = s.verify().unwrap();
    assert!(v.bad.is_empty(), "{:?}", v.bad);
    assert_eq!(v.checked, s.stats().unwrap().entries);
}
