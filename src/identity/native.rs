//! The identity of native code loaded in this process: what a fingerprint
//! uses for a callee in one of the user's own extension modules (libraries
//! are keyed by distribution and version instead).
//!
//! The code that runs is what was loaded, which need not be what is on disk
//! now (an extension rebuilt while a kernel keeps the old one), so the
//! identity is read from memory: the GNU build ID note the linker computed
//! over the whole output file, or, without one, the bytes of every loaded
//! segment (writable ones hold relocated pointers, so that digest differs
//! between processes: a miss, never a stale hit).
//!
//! Linux only (`dl_iterate_phdr`); elsewhere native callees of the user's
//! own extensions cannot be fingerprinted and such calls are not memoized.
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ahash::AHashMap;

use super::digest::{Digest, Hasher};

/// Canonical path of a loaded object -> its digest (loaded code never
/// changes, so this is computed once per object and process).
static CACHE: Mutex<Option<AHashMap<PathBuf, Digest>>> = Mutex::new(None);

/// The digest of the loaded shared object whose file is `path`, or `None`
/// when no loaded object has that file.
pub fn loaded_object_digest(path: &Path) -> Option<Digest> {
    let want = std::fs::canonicalize(path).ok()?;
    if let Some(d) = CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(&want).copied()))
    {
        return Some(d);
    }
    let d = imp::digest(&want)?;
    if let Ok(mut c) = CACHE.lock() {
        c.get_or_insert_with(AHashMap::new).insert(want, d);
    }
    Some(d)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{c_int, c_void, CStr, OsStr};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::{Digest, Hasher};

    const NT_GNU_BUILD_ID: u32 = 3;

    struct Search<'a> {
        want: &'a Path,
        found: bool,
        build_id: Option<Vec<u8>>,
        /// (address, length) of each loaded segment's file-backed bytes.
        segments: Vec<(usize, usize)>,
    }

    pub fn digest(want: &Path) -> Option<Digest> {
        let mut search = Search {
            want,
            found: false,
            build_id: None,
            segments: Vec::new(),
        };
        // SAFETY: `visit` matches the callback type and only uses `data` as
        // the `Search` we pass, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast::<c_void>());
        }
        if !search.found {
            return None;
        }
        // Hashed after the loader's lock is released (hashing may start
        // threads). The object stays mapped: CPython never unloads an
        // extension module.
        let mut h = Hasher::new();
        match &search.build_id {
            Some(id) => {
                h.str("gnu-build-id");
                h.bytes(id);
            }
            None => {
                h.str("segments");
                for &(start, len) in &search.segments {
                    // SAFETY: a PT_LOAD segment is mapped readable at load
                    // address + p_vaddr for p_memsz >= p_filesz bytes while
                    // the object is loaded, and it stays loaded (above).
                    h.bytes(unsafe { std::slice::from_raw_parts(start as *const u8, len) });
                }
            }
        }
        Some(h.finish())
    }

    /// Called by the loader for each loaded object, under its lock: finds
    /// ours and notes its build ID and segments.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the `Search` passed to `dl_iterate_phdr`; `info`
        // is valid for this call (loader contract).
        let (search, info) = unsafe { (&mut *data.cast::<Search<'_>>(), &*info) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: a non-NULL `dlpi_name` is a NUL-terminated path.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) };
        let path = Path::new(OsStr::from_bytes(name.to_bytes()));
        // Cheap test first: only objects with the same file name are resolved.
        if path.file_name() != search.want.file_name()
            || std::fs::canonicalize(path).ok().as_deref() != Some(search.want)
        {
            return 0;
        }
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: the loader gives `dlpi_phnum` program headers there.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let start =
            |p: &libc::Elf64_Phdr| (info.dlpi_addr as usize).wrapping_add(p.p_vaddr as usize);
        for p in phdrs {
            if p.p_type == libc::PT_NOTE && search.build_id.is_none() {
                // SAFETY: a PT_NOTE segment is mapped readable for p_memsz
                // bytes at load address + p_vaddr while the object is loaded.
                let notes = unsafe {
                    std::slice::from_raw_parts(start(p) as *const u8, p.p_memsz as usize)
                };
                search.build_id = gnu_build_id(notes).map(<[u8]>::to_vec);
            } else if p.p_type == libc::PT_LOAD {
                search.segments.push((start(p), p.p_filesz as usize));
            }
        }
        search.found = true;
        1
    }

    /// The descriptor of an `NT_GNU_BUILD_ID` note named "GNU", if `notes`
    /// (a PT_NOTE segment) holds one.
    fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
        let word = |i: usize, b: &[u8]| -> Option<usize> {
            Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
        };
        let pad = |n: usize| n.div_ceil(4) * 4;
        while notes.len() >= 12 {
            let (namesz, descsz, kind) = (word(0, notes)?, word(4, notes)?, word(8, notes)?);
            let name = notes.get(12..12 + namesz)?;
            let desc_at = 12 + pad(namesz);
            let desc = notes.get(desc_at..desc_at + descsz)?;
            if kind == NT_GNU_BUILD_ID as usize && name == b"GNU\0" {
                return Some(desc);
            }
            notes = notes.get(desc_at + pad(descsz)..)?;
        }
        None
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::path::Path;

    use super::Digest;

    pub fn digest(_: &Path) -> Option<Digest> {
        None
    }
}
