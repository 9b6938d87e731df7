//! Emits `Py_3_x` cfgs for the `python` feature (used only by `src/hook/compat.rs`,
//! which holds CPython-version-specific frame and code-object layouts).
fn main() {
    #[cfg(feature = "python")]
    pyo3_build_config::use_pyo3_cfgs();
}
