//! Functional tests of the store API.
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use _bytecache::storage::{Claim, Deps, DirDep, NewEntry, Options, RecordDep, StorageError, Store};

fn opts(dir: &tempfile::TempDir) -> Options {
    Options {
        secret_path: Some(dir.path().join("secret")),
        ..Options::default()
    }
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_le_bytes());
    k[8..].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
    k
}

fn sample_deps() -> Deps {
    Deps {
        files: vec![],
        dirs: vec![DirDep {
            path: "/data".into(),
            digest: [1; 16],
        }],
        record: vec![RecordDep {
            kind: "global".into(),
            name: "m.K".into(),
            display: Some("10".into()),
            digest: [2; 16],
        }],
    }
}

fn put(s: &Store, k: u64, payload: &[u8], bufs: &[&[u8]], group: u8) {
    let e = NewEntry {
        group: [group; 16],
        payload,
        buffers: bufs,
        deps: &sample_deps(),
        compute_ns: 1_000_000,
    };
    s.put(&key(k), &e).unwrap();
}

#[test]
fn round_trip_small_and_buffers() {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path().join("store"), opts(&t)).unwrap();
    assert!(s.get(&key(1)).unwrap().is_none());
    put(&s, 1, b"hello", &[], 7);
    let big = vec![3u8; 1 << 20];
    put(&s, 2, b"with buffers", &[b"abc", &big], 7);
    let v = s.get(&key(1)).unwrap().unwrap();
    assert_eq!(v.payload(), b"hello");
    assert!(v.deps().is_some_and(|d| d == sample_deps()));
    assert!(v.has_file_deps());
    assert_eq!(v.buffer_count(), 0);
    assert_eq!(v.meta.compute_ns, 1_000_000);
    assert_eq!(v.meta.group, [7; 16]);
    let v = s.get(&key(2)).unwrap().unwrap();
    assert_eq!(v.payload(), b"with buffers");
    let bufs = v.buffers();
    assert_eq!(bufs[0], b"abc");
    assert_eq!(bufs[1], &big[..]);
    for b in &bufs {
        assert_eq!(b.as_ptr() as usize % 4096, 0, "buffers are page-aligned");
    }
    let mut private = v.buffer_private(1).unwrap().unwrap();
    private[0] = 99;
    assert_eq!(v.buffers()[1][0], 3, "private mapping writes stay private");
    s.remove(&key(2)).unwrap();
    assert_eq!(v.buffers()[1], &big[..], "view outlives removal");
    assert_eq!(private[1], 3);
    let st = s.stats().unwrap();
    assert_eq!(st.entries, 1);
    assert!(st.hits >= 1);
}

#[test]
fn replace_remove_clear_reopen() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    {
        let s = Store::open(&dir, opts(&t)).unwrap();
        for i in 0..3000 {
            put(&s, i, format!("v{i}").as_bytes(), &[], (i % 3) as u8);
        }
        put(&s, 5, b"replaced", &[], 2);
        assert!(s.remove(&key(6)).unwrap());
        assert!(!s.remove(&key(6)).unwrap());
        assert_eq!(s.clear(Some(&[1; 16])).unwrap(), 1000);
        assert_eq!(s.stats().unwrap().entries, 1999);
    }
    let s = Store::open(&dir, opts(&t)).unwrap();
    for i in 0..3000u64 {
        let got = s.get(&key(i)).unwrap();
        match i {
            5 => assert_eq!(got.unwrap().payload(), b"replaced"),
            6 => assert!(got.is_none()),
            i if i % 3 == 1 => assert!(got.is_none()),
            i => assert_eq!(got.unwrap().payload(), format!("v{i}").as_bytes()),
        }
    }
    assert_eq!(s.list().unwrap().len(), 1999);
    assert_eq!(s.clear(None).unwrap(), 1999);
    assert_eq!(s.stats().unwrap().entries, 0);
}

#[test]
fn eviction_bounds_bytes_and_compacts() {
    let t = tempfile::tempdir().unwrap();
    let o = Options {
        max_bytes: 200_000,
        segment_bytes: 64 << 10,
        ..opts(&t)
    };
    let s = Store::open(t.path().join("store"), o).unwrap();
    let payload = vec![1u8; 1000];
    for i in 0..2000 {
        put(&s, i, &payload, &[], 0);
        if i % 10 == 0 {
            s.get(&key(0)).unwrap(); // key 0 is hot: GDSF keeps it
        }
    }
    let st = s.stats().unwrap();
    assert!(st.bytes <= 200_000, "{st:?}");
    assert!(s.get(&key(0)).unwrap().is_some());
    s.gc().unwrap();
    let disk: u64 = std::fs::read_dir(t.path().join("store/data"))
        .unwrap()
        .map(|e| std::os::unix::fs::MetadataExt::blocks(&e.unwrap().metadata().unwrap()) * 512)
        .sum();
    assert!(disk < 600_000, "data files use {disk} bytes");
    for m in s.list().unwrap() {
        assert_eq!(s.get(&m.key).unwrap().unwrap().payload(), &payload[..]);
    }
    // An entry larger than max_bytes is refused (and says so), evicting nothing.
    let before = s.stats().unwrap().entries;
    let huge = NewEntry {
        group: [0; 16],
        payload: &vec![2u8; 300_000],
        buffers: &[],
        deps: &Deps::default(),
        compute_ns: 1,
    };
    assert!(!s.put(&key(99_999), &huge).unwrap());
    assert!(s.get(&key(99_999)).unwrap().is_none());
    assert_eq!(s.stats().unwrap().entries, before);
}

#[test]
fn refuses_unsafe_permissions() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Store::open(&dir, opts(&t)).err().unwrap();
    assert!(
        matches!(err, StorageError::UnsafePermissions { .. }),
        "{err}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    Store::open(&dir, opts(&t)).unwrap();
    // A file inside the (safe) directory with a bad mode is damage: moved
    // aside, never trusted, and the store keeps working.
    std::fs::set_permissions(dir.join("index"), std::fs::Permissions::from_mode(0o666)).unwrap();
    Store::open(&dir, opts(&t)).unwrap();
    let mode = std::fs::metadata(dir.join("index"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let moved = std::fs::read_dir(dir.join("quarantine")).unwrap().count();
    assert_eq!(moved, 1, "the old index and its data, in quarantine/");
    // A lock file others can write is refused by the first write (a store
    // that only reads never opens it).
    std::fs::set_permissions(dir.join("lock"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let s = Store::open(&dir, opts(&t)).unwrap();
    assert!(s.get(&key(1)).unwrap().is_none());
    let e = NewEntry {
        group: [0; 16],
        payload: b"x",
        buffers: &[],
        deps: &Deps::default(),
        compute_ns: 1,
    };
    let err = s.put(&key(1), &e).err().unwrap();
    assert!(
        matches!(err, StorageError::UnsafePermissions { .. }),
        "{err}"
    );
    std::fs::set_permissions(dir.join("lock"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(s.put(&key(1), &e).unwrap());
    let secret = t.path().join("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Store::open(t.path().join("other"), opts(&t)).err().unwrap();
    assert!(
        matches!(err, StorageError::UnsafePermissions { .. }),
        "{err}"
    );
}

/// A directory above the store that every user can write (no sticky bit)
/// is refused however the path reaches it: plainly, through a symbolic
/// link, or with `.` and `..` on the way; a link to a safe place is fine.
#[test]
fn ancestors_are_checked_through_links() {
    use std::os::unix::fs::symlink;
    let t = tempfile::tempdir().unwrap();
    let open = t.path().join("open");
    std::fs::create_dir_all(open.join("s")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    symlink(open.join("s"), t.path().join("link")).unwrap();
    let refused = |p: std::path::PathBuf| {
        let err = Store::open(&p, opts(&t)).err();
        assert!(
            matches!(err, Some(StorageError::UnsafePermissions { .. })),
            "{} opened: {err:?}",
            p.display()
        );
    };
    refused(open.join("s/store"));
    refused(t.path().join("link/store"));
    refused(open.join("s/../s/./store"));
    let safe = t.path().join("safe");
    std::fs::create_dir(&safe).unwrap();
    symlink(&safe, t.path().join("safe-link")).unwrap();
    Store::open(t.path().join("safe-link/store"), opts(&t)).unwrap();
    Store::open(safe.join("./store"), opts(&t)).unwrap();
    assert!(safe.join("store/index").exists());
}

#[test]
fn corrupt_record_is_a_miss_and_quarantined() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let s = Store::open(&dir, opts(&t)).unwrap();
    put(&s, 1, b"good", &[], 0);
    put(&s, 2, b"victim", &[], 0);
    put(&s, 3, b"big", &[&[5u8; 10_000]], 0);
    drop(s);
    for f in std::fs::read_dir(dir.join("data")).unwrap() {
        let p = f.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        if let Some(pos) = bytes.windows(6).position(|w| w == b"victim") {
            bytes[pos] ^= 1;
            std::fs::write(&p, bytes).unwrap();
        } else if bytes.len() > 8000 {
            bytes[8000] ^= 1; // a buffer byte of key 3 (checked: small buffers)
            std::fs::write(&p, bytes).unwrap();
        }
    }
    let s = Store::open(&dir, opts(&t)).unwrap();
    assert_eq!(s.get(&key(1)).unwrap().unwrap().payload(), b"good");
    assert!(s.get(&key(2)).unwrap().is_none());
    assert!(s.get(&key(3)).unwrap().is_none());
    assert_eq!(s.stats().unwrap().entries, 1);
    let quarantined = std::fs::read_dir(dir.join("quarantine")).unwrap().count();
    assert_eq!(quarantined, 4, "two records + two reasons");
    put(&s, 2, b"victim", &[], 0);
    assert_eq!(s.get(&key(2)).unwrap().unwrap().payload(), b"victim");
    assert!(s.verify().unwrap().bad.is_empty());
}

/// Flips one byte of the data file holding `needle`, in place (same inode,
/// same length: what a mapping sees): its first byte, or with `header` a
/// byte of the MAC tag in the header of the record holding it.
fn flip_in_place(dir: &std::path::Path, needle: &[u8], header: bool) {
    use std::io::{Seek, SeekFrom, Write};
    for f in std::fs::read_dir(dir.join("data")).unwrap() {
        let p = f.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        if let Some(pos) = bytes.windows(needle.len()).position(|w| w == needle) {
            let start = bytes[..pos]
                .windows(8)
                .rposition(|w| w == b"BYTCREC1")
                .unwrap();
            let at = if header { start + 40 } else { pos };
            let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.seek(SeekFrom::Start(at as u64)).unwrap();
            f.write_all(&[bytes[at] ^ 1]).unwrap();
            return;
        }
    }
    panic!("not found");
}

/// A record this process wrote reads as verified (no MAC), exactly as one it
/// verified: its payload rewritten in place is not noticed by this process
/// (see the security policy), its header rewritten is (verified afresh), and
/// another opening of the store verifies everything.
#[test]
fn own_writes_read_as_verified() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let s = Store::open(&dir, opts(&t)).unwrap();
    put(&s, 1, b"payload-one", &[], 0);
    put(&s, 2, b"payload-two", &[], 0);
    let before = std::fs::metadata(dir.join("index")).unwrap().len();
    for k in 3..1000 {
        put(&s, k, b"more", &[], 0); // the index grows (is rebuilt)
    }
    assert!(std::fs::metadata(dir.join("index")).unwrap().len() > before);
    flip_in_place(&dir, b"payload-one", false);
    flip_in_place(&dir, b"payload-two", true);
    assert_eq!(s.get(&key(1)).unwrap().unwrap().payload(), b"qayload-one");
    let other = Store::open(&dir, opts(&t)).unwrap();
    assert!(other.get(&key(1)).unwrap().is_none());
    assert!(s.get(&key(2)).unwrap().is_none());
}

#[test]
fn foreign_or_garbage_index_is_reset() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let s = Store::open(&dir, opts(&t)).unwrap();
    put(&s, 1, b"x", &[], 0);
    drop(s);
    let mut ix = std::fs::read(dir.join("index")).unwrap();
    ix[8] = 99; // another format version, but the header check no longer holds
    std::fs::write(dir.join("index"), &ix).unwrap();
    let s = Store::open(&dir, opts(&t)).unwrap();
    assert!(s.reset_reason().is_some_and(|r| r.contains("damaged")));
    assert!(s.get(&key(1)).unwrap().is_none());
    put(&s, 1, b"y", &[], 0);
    assert_eq!(s.get(&key(1)).unwrap().unwrap().payload(), b"y");
    drop(s);
    std::fs::write(dir.join("index"), b"garbage").unwrap();
    let s = Store::open(&dir, opts(&t)).unwrap();
    assert!(s.get(&key(1)).unwrap().is_none());
}

#[test]
fn wrong_secret_is_a_miss() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let s = Store::open(&dir, opts(&t)).unwrap();
    put(&s, 1, b"x", &[], 0);
    drop(s);
    let o = Options {
        secret_path: Some(t.path().join("other-secret")),
        ..Options::default()
    };
    let s = Store::open(&dir, o).unwrap();
    assert!(s.get(&key(1)).unwrap().is_none());
}

#[test]
fn claim_serializes_computation() {
    let t = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(Store::open(t.path().join("store"), opts(&t)).unwrap());
    let computed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (s, computed) = (s.clone(), computed.clone());
            std::thread::spawn(
                move || match s.claim(&key(9), Duration::from_secs(10)).unwrap() {
                    Claim::Compute(guard) => {
                        computed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        put(&s, 9, b"done", &[], 0);
                        drop(guard);
                    }
                    Claim::Ready => assert_eq!(s.get(&key(9)).unwrap().unwrap().payload(), b"done"),
                    Claim::TimedOut => panic!("timed out"),
                },
            )
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(computed.load(std::sync::atomic::Ordering::SeqCst), 1);
    let held = match s.claim(&key(10), Duration::ZERO).unwrap() {
        Claim::Compute(g) => g,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        s.claim(&key(10), Duration::from_millis(20)).unwrap(),
        Claim::TimedOut
    ));
    drop(held);
    assert!(matches!(
        s.claim(&key(10), Duration::ZERO).unwrap(),
        Claim::Compute(_)
    ));
}

/// Two opens of one store hold separate descriptors, as two processes do:
/// a claim taken through one blocks the other until it is dropped, and
/// claims on other keys (including keys alike in their first bytes) do not.
#[test]
fn claims_exclude_across_opens() {
    let t = tempfile::tempdir().unwrap();
    let a = Store::open(t.path().join("store"), opts(&t)).unwrap();
    let b = Store::open(t.path().join("store"), opts(&t)).unwrap();
    let held = match a.claim(&key(3), Duration::ZERO).unwrap() {
        Claim::Compute(g) => g,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        b.claim(&key(3), Duration::from_millis(20)).unwrap(),
        Claim::TimedOut
    ));
    let mut near = key(3);
    near[15] ^= 1;
    assert!(matches!(
        b.claim(&near, Duration::ZERO).unwrap(),
        Claim::Compute(_)
    ));
    drop(held);
    assert!(matches!(
        b.claim(&key(3), Duration::ZERO).unwrap(),
        Claim::Compute(_)
    ));
}

/// A small segment's space is allocated ahead of its end a chunk at a
/// time, not record by record: after the first small put the file holds
/// one record but has room allocated for many more (most puts then make
/// no allocation call), and its size is still what it holds.
#[test]
fn small_segments_allocate_ahead() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path().join("store"), opts(&t)).unwrap();
    put(&s, 1, b"small", &[], 0);
    let data = t.path().join("store").join("data");
    let seg = std::fs::read_dir(&data).unwrap().next().unwrap().unwrap();
    let m = seg.metadata().unwrap();
    assert!(m.len() < 4096, "size {}", m.len());
    assert!(
        m.blocks() * 512 >= 64 << 10,
        "allocated {}",
        m.blocks() * 512
    );
    put(&s, 2, b"small too", &[], 0);
    assert_eq!(s.get(&key(1)).unwrap().unwrap().payload(), b"small");
    assert_eq!(s.get(&key(2)).unwrap().unwrap().payload(), b"small too");
}

#[test]
fn full_durability_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let o = Options {
        durability: _bytecache::storage::Durability::Full,
        ..opts(&t)
    };
    let s = Store::open(t.path().join("store"), o).unwrap();
    put(&s, 1, b"durable", &[], 0);
    put(&s, 2, b"durable big", &[&[1u8; 9000]], 0);
    assert_eq!(s.get(&key(1)).unwrap().unwrap().payload(), b"durable");
    assert_eq!(
        s.get(&key(2)).unwrap().unwrap().buffers()[0],
        &[1u8; 9000][..]
    );
}
