//! criterion benches of argument hashing and fingerprinting, in an embedded
//! interpreter. Run through `bash ci/bench.sh`, or by hand (the extension must
//! be built, e.g. by `. ci/env.sh`, and libpython found at run time):
//!
//! ```sh
//! LD_LIBRARY_PATH=$(python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))') \
//!   PYO3_PYTHON=$(command -v python) cargo bench --features bench-python --bench identity
//! ```
use std::ffi::CString;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use _bytecache::identity::native;
use _bytecache::identity::{key_digest, value_digest, Memo};

/// A module whose `f` reaches ten helper functions and a global.
const TEN_HELPERS: &str = r#"
K = 3
def h0(x): return x + K
def h1(x): return h0(x) * 2
def h2(x): return h1(x) - 1
def h3(x): return h2(x) + h0(x)
def h4(x): return [h3(i) for i in range(x)]
def h5(x): return sum(h4(x))
def h6(x): return (lambda y: h5(y))(x)
def h7(x): return h6(x) if x > 0 else h2(x)
def h8(x): return max(h7(x), h1(x))
def h9(x): return h8(x) + h3(x)
def f(x): return h9(x) + h5(x)
def g(x): return x + 1
"#;

fn module<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyModule> {
    let code = CString::new(TEN_HELPERS).expect("no NUL in the source");
    // An absolute path, as a real module's `__file__` is.
    let file = std::env::temp_dir().join(format!("{name}.py"));
    let file = CString::new(file.to_string_lossy().as_bytes()).expect("no NUL");
    let name = CString::new(name).expect("no NUL");
    PyModule::from_code(py, &code, &file, &name).expect("the bench module compiles")
}

fn identity(c: &mut Criterion) {
    Python::attach(|py| {
        // `bytecache._modkind` (library classification) comes from python/.
        let path = py
            .import("sys")
            .and_then(|s| s.getattr("path"))
            .expect("sys.path");
        path.call_method1(
            "insert",
            (0, concat!(env!("CARGO_MANIFEST_DIR"), "/python")),
        )
        .expect("sys.path.insert");

        let m = module(py, "bench_helpers");
        let g = m.getattr("g").expect("g");
        let args = PyDict::new(py);
        args.set_item("x", 5).expect("set_item");
        // What a call costs: the cached plan's guards, then the argument.
        let memo = Memo::new(&g, Vec::new()).expect("a function");
        c.bench_function("key of g(int)", |b| {
            b.iter(|| memo.key_digest(&args).expect("hashable"))
        });
        c.bench_function("key of g(int), no cached plan", |b| {
            b.iter(|| key_digest(&g, &args, &[]).expect("hashable"))
        });

        let f = m.getattr("f").expect("f");
        let memo = Memo::new(&f, Vec::new()).expect("a function");
        c.bench_function("fingerprint, 10 helpers, again", |b| {
            b.iter(|| memo.key_digest(&args).expect("hashable"))
        });
        // First time, as after re-running a notebook cell: the same module,
        // new function and code objects (nothing cached but the module's
        // classification).
        let cell = CString::new(TEN_HELPERS).expect("no NUL in the source");
        let globals = m.dict();
        c.bench_function("fingerprint, 10 helpers, first time (cell re-run)", |b| {
            b.iter_batched(
                || {
                    py.run(&cell, Some(&globals), None).expect("the cell runs");
                    globals.get_item("f").expect("f").expect("f")
                },
                |f| {
                    let m = Memo::new(&f, Vec::new()).expect("a function");
                    m.key_digest(&args).expect("hashable")
                },
                BatchSize::SmallInput,
            )
        });
        // First time in a module never seen before: includes classifying the
        // module (standard library, installed, or the user's), once per
        // module per process.
        let mut n = 0u64;
        c.bench_function("fingerprint, 10 helpers, first time (new module)", |b| {
            b.iter_batched(
                || {
                    n += 1;
                    module(py, &format!("bench_fresh_{n}"))
                        .getattr("f")
                        .expect("f")
                },
                |f| {
                    let m = Memo::new(&f, Vec::new()).expect("a function");
                    m.key_digest(&args).expect("hashable")
                },
                BatchSize::SmallInput,
            )
        });

        let mut group = c.benchmark_group("argument hashing");
        let size = 100usize << 20;
        group.throughput(Throughput::Bytes(size as u64));
        group.sample_size(10);
        let buffer = py
            .eval(c"memoryview(bytearray(100 * 2**20))", None, None)
            .expect("a 100 MiB buffer");
        group.bench_function("100 MiB buffer", |b| {
            b.iter(|| value_digest(&buffer).expect("hashable"))
        });
        group.finish();

        // A native callee's own-code key: the walk of its machine code, per
        // function (standard-library extension functions stand in for the
        // user's: the same compilers and flags). Then the per-address cache.
        let mut group = c.benchmark_group("native walk");
        for name in [
            "math.factorial",
            "math.fsum",
            "binascii.crc32",
            "zlib.crc32",
        ] {
            let (module, attr) = name.split_once('.').expect("module.name");
            let f = py
                .import(module)
                .and_then(|m| m.getattr(attr))
                .expect("a native function");
            let entry = native::entry(&f).expect("a C function").addr;
            let stats = native::walk_once(entry, false).expect("walkable");
            eprintln!(
                "native walk of {name}: {} instructions, {} functions, {} data bytes",
                stats.instructions, stats.functions, stats.data
            );
            group.bench_function(format!("{name}, walk"), |b| {
                b.iter(|| native::walk_once(entry, false).expect("walkable"))
            });
            group.bench_function(format!("{name}, first walk in its object"), |b| {
                b.iter(|| native::walk_once(entry, true).expect("walkable"))
            });
            group.bench_function(format!("{name}, cached"), |b| {
                b.iter(|| native::callee(entry).expect("loaded"))
            });
        }
        group.finish();
    });
}

criterion_group!(benches, identity);
criterion_main!(benches);
