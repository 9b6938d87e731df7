//! Helpers shared by the storage integration tests.
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub use _bytecache::storage::Options;
use _bytecache::storage::{Deps, FileDep, NewEntry, RecordDep, Store};

pub fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_le_bytes());
    k[8..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    k
}

/// The deterministic value stored under `key(i)`: payload and buffers.
pub fn value(i: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let payload = format!("payload-{i}-")
        .repeat(1 + (i % 13) as usize)
        .into_bytes();
    let bufs = if i % 5 == 0 {
        vec![vec![(i % 251) as u8; 5000 + (i % 7) as usize * 1000]]
    } else {
        vec![]
    };
    (payload, bufs)
}

/// The dependency record stored with `key(i)`.
pub fn deps(i: u64) -> Deps {
    Deps {
        files: vec![FileDep {
            path: format!("/data/input-{i}.csv"),
            size: i,
            mtime_ns: -(i as i64),
            digest: [(i % 256) as u8; 16],
        }],
        dirs: vec![],
        record: vec![RecordDep {
            kind: "function".into(),
            name: format!("m.f{i}"),
            display: (i % 2 == 0).then(|| "m.py".into()),
            digest: [7; 16],
        }],
    }
}

pub fn put_value(s: &Store, i: u64) {
    let (payload, bufs) = value(i);
    let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
    let e = NewEntry {
        group: [(i % 3) as u8; 16],
        payload: &payload,
        buffers: &refs,
        deps: &deps(i),
        compute_ns: i,
    };
    s.put(&key(i), &e).expect("put");
}

/// `Some(true)` correct value, `Some(false)` WRONG value, `None` miss.
pub fn check_value(s: &Store, i: u64) -> Option<bool> {
    let v = s.get(&key(i)).expect("get")?;
    let (payload, bufs) = value(i);
    let got: Vec<Vec<u8>> = v.buffers().iter().map(|b| b.to_vec()).collect();
    Some(v.payload() == payload && got == bufs && v.deps().is_some_and(|d| d == deps(i)))
}

pub fn opts(secret: &Path) -> Options {
    Options {
        secret_path: Some(secret.to_path_buf()),
        segment_bytes: 64 << 10,
        ..Options::default()
    }
}

/// Every regular file under `dir`, by relative path.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

pub fn restore(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let _ = std::fs::remove_dir_all(dir);
    for sub in ["", "data", "quarantine"] {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.join(sub))
            .unwrap();
    }
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p.parent().unwrap())
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
    }
}

/// Re-runs this test binary as a child process executing test `name`
/// with `env` set (the child test checks the env and does its work).
pub fn spawn_child(name: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}
