//! Pure-Rust result store (no pyo3). Memory-mapped rkyv archives.
