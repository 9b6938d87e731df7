//! PEP 523 frame-evaluation hook. The only module that touches CPython's
//! private frame layout; per-version accessors live in `compat.rs`.
