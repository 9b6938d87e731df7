//! Property tests: random operation sequences against an in-memory model,
//! and random corruption of every file of a store (never a wrong value,
//! never a panic).
mod common;

use std::collections::HashMap;

use _bytecache::storage::{NewEntry, Options, Store};
use common::{check_value, deps, key, put_value, snapshot};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put {
        k: u8,
        len: usize,
        fill: u8,
        bufs: u8,
    },
    Get(u8),
    Remove(u8),
    ClearGroup(u8),
    Gc,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, 0usize..3000, any::<u8>(), 0u8..3).prop_map(|(k, len, fill, bufs)| Op::Put { k, len, fill, bufs }),
        4 => (0u8..24).prop_map(Op::Get),
        1 => (0u8..24).prop_map(Op::Remove),
        1 => (0u8..3).prop_map(Op::ClearGroup),
        1 => Just(Op::Gc),
        1 => Just(Op::Reopen),
    ]
}

type Model = HashMap<u8, (Vec<u8>, Vec<Vec<u8>>)>;

fn small_opts(secret: &std::path::Path) -> Options {
    // Tiny segments: records roll over, get compacted and swept constantly.
    Options {
        secret_path: Some(secret.into()),
        segment_bytes: 8 << 10,
        ..Options::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let t = tempfile::tempdir().unwrap();
        let (dir, secret) = (t.path().join("s"), t.path().join("secret"));
        let mut s = Store::open(&dir, small_opts(&secret)).unwrap();
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Put { k, len, fill, bufs } => {
                    let payload = vec![fill; len];
                    let buffers: Vec<Vec<u8>> = (0..bufs).map(|b| vec![fill ^ b; len / 2 + b as usize]).collect();
                    let refs: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
                    let e = NewEntry { group: [k % 3; 16], payload: &payload, buffers: &refs, deps: &deps(u64::from(k)), compute_ns: 5 };
                    s.put(&key(u64::from(k)), &e).unwrap();
                    model.insert(k, (payload, buffers));
                }
                Op::Get(k) => {
                    let got = s.get(&key(u64::from(k))).unwrap();
                    let got = got.map(|v| (v.payload().to_vec(), v.buffers().iter().map(|b| b.to_vec()).collect::<Vec<_>>()));
                    prop_assert_eq!(got.as_ref(), model.get(&k));
                }
                Op::Remove(k) => prop_assert_eq!(s.remove(&key(u64::from(k))).unwrap(), model.remove(&k).is_some()),
                Op::ClearGroup(g) => {
                    let n = s.clear(Some(&[g; 16])).unwrap();
                    let before = model.len();
                    model.retain(|k, _| k % 3 != g);
                    prop_assert_eq!(n as usize, before - model.len());
                }
                Op::Gc => prop_assert_eq!(s.gc().unwrap(), 0),
                Op::Reopen => {
                    drop(s);
                    s = Store::open(&dir, small_opts(&secret)).unwrap();
                }
            }
            prop_assert_eq!(s.stats().unwrap().entries as usize, model.len());
        }
        for (k, (payload, buffers)) in &model {
            let v = s.get(&key(u64::from(*k))).unwrap().unwrap();
            prop_assert_eq!(v.payload(), &payload[..]);
            prop_assert_eq!(v.buffers().len(), buffers.len());
        }
        prop_assert!(s.verify().unwrap().bad.is_empty());
    }

    #[test]
    fn corrupted_files_never_yield_wrong_values(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..=255, any::<bool>()), 1..8)
    ) {
        let t = tempfile::tempdir().unwrap();
        let (dir, secret) = (t.path().join("s"), t.path().join("secret"));
        let opts = Options { secret_path: Some(secret.clone()), segment_bytes: 16 << 10, ..Options::default() };
        {
            let s = Store::open(&dir, opts.clone()).unwrap();
            for i in 0..40 {
                put_value(&s, i);
            }
        }
        // Flip bytes (or truncate) anywhere in any file of the store.
        let files: Vec<_> = snapshot(&dir).into_iter().filter(|(_, b)| !b.is_empty()).collect();
        for (file, at, xor, truncate) in edits {
            let (rel, _) = &files[file.index(files.len())];
            let p = dir.join(rel);
            let mut bytes = std::fs::read(&p).unwrap();
            if bytes.is_empty() {
                continue;
            }
            let at = at.index(bytes.len());
            if truncate {
                bytes.truncate(at);
            } else {
                bytes[at] ^= xor;
            }
            std::fs::write(&p, bytes).unwrap();
        }
        let s = Store::open(&dir, opts).unwrap();
        for i in 0..40 {
            prop_assert_ne!(check_value(&s, i), Some(false), "wrong value for key {}", i);
        }
        s.verify().unwrap();
        s.list().unwrap();
        put_value(&s, 100);
        prop_assert_eq!(check_value(&s, 100), Some(true));
        s.gc().unwrap();
        for i in 0..40 {
            prop_assert_ne!(check_value(&s, i), Some(false));
        }
    }
}
