//! criterion benches of the pure-Rust store: `cargo bench --bench storage`.
use std::hint::black_box;
use std::time::Duration;

use _bytecache::storage::{Deps, NewEntry, Options, Store};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_le_bytes());
    k[8..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    k
}

fn open(dir: &std::path::Path) -> Store {
    let o = Options {
        secret_path: Some(dir.join("secret")),
        max_bytes: 1 << 40,
        ..Options::default()
    };
    Store::open(dir.join("store"), o).unwrap()
}

static NO_DEPS: Deps = Deps {
    files: Vec::new(),
    dirs: Vec::new(),
    record: Vec::new(),
};

fn small(payload: &[u8]) -> NewEntry<'_> {
    NewEntry {
        group: [1; 16],
        payload,
        buffers: &[],
        deps: &NO_DEPS,
        compute_ns: 1000,
    }
}

const PAYLOAD: &[u8] = &[7u8; 100];

fn bench(c: &mut Criterion) {
    let t = tempfile::tempdir().unwrap();
    let s = open(t.path());
    s.put(&key(0), &small(PAYLOAD)).unwrap();
    c.bench_function("get small (100 B)", |b| {
        b.iter(|| black_box(s.get(black_box(&key(0))).unwrap().unwrap().payload().len()))
    });
    let mut i = 1_000_000_000u64;
    c.bench_function("put small (100 B, no fsync)", |b| {
        b.iter(|| {
            i += 1;
            s.put(&key(i), &small(PAYLOAD)).unwrap()
        })
    });
    let big = vec![1u8; 100 << 20];
    let bufs: [&[u8]; 1] = [&big];
    s.put(
        &key(1),
        &NewEntry {
            group: [1; 16],
            payload: b"hdr",
            buffers: &bufs,
            deps: &NO_DEPS,
            compute_ns: 1,
        },
    )
    .unwrap();
    c.bench_function("get 100 MiB (private buffer mapping)", |b| {
        b.iter(|| {
            let v = s.get(&key(1)).unwrap().unwrap();
            black_box(v.buffer_private(0).unwrap().unwrap().len())
        })
    });
    drop(s);
    c.bench_function("open", |b| b.iter(|| black_box(open(t.path()))));

    let mut g = c.benchmark_group("get small, random key among N");
    for n in [1_000u64, 1_000_000] {
        let t = tempfile::tempdir().unwrap();
        let s = open(t.path());
        for i in 0..n {
            s.put(&key(i), &small(PAYLOAD)).unwrap();
        }
        // Steady state of a long-running process: every record verified
        // (MAC) once already; the first get of a record costs ~1 µs more.
        for i in 0..n {
            s.get(&key(i)).unwrap().unwrap();
        }
        let mut x = 1u64;
        // Uniform over all N keys (memory-bound for large N), and the same
        // 1000 hot keys in stores of either size (isolates the index).
        for (name, range) in [("all", n), ("hot1000", 1000)] {
            g.bench_with_input(BenchmarkId::new(name, n), &range, |b, &range| {
                b.iter(|| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    black_box(
                        s.get(&key((x >> 33) % range))
                            .unwrap()
                            .unwrap()
                            .payload()
                            .len(),
                    )
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
