//! The objects loaded in this process, and the only reads of their memory:
//! the loader's list (`dl_iterate_phdr`), the build ID note, an executable
//! segment's bytes and one word of a mapped segment. Every read is bounded
//! by a `PT_LOAD` (or `PT_NOTE`) segment of an object the loader listed.
//!
//! Why the memory stays mapped while it is read: the object was listed as
//! loaded, and only `dlclose` unmaps it. CPython never closes an extension
//! module; ctypes closes a library only through `_ctypes.dlclose`, which needs
//! the GIL that every caller of this module holds. (A native thread of the
//! user's calling `dlclose` on the very object being read is not covered.)
//! `unloads` counts the objects ever closed, so the caches of `native` are
//! dropped when one was: a new object at an old address is never taken for
//! the one that was there.
use std::ffi::{c_int, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

const NT_GNU_BUILD_ID: u32 = 3;

/// One `PT_LOAD` segment, at its run-time address.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub start: usize,
    /// Bytes backed by the file (`p_filesz`).
    pub file_len: usize,
    /// Bytes mapped (`p_memsz`; the rest of the file-backed part is zeros).
    pub mem_len: usize,
    pub exec: bool,
    pub write: bool,
}

impl Segment {
    fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.start
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= self.start.saturating_add(self.mem_len))
    }
}

/// A loaded object as the loader lists it.
#[derive(Debug)]
pub struct Object {
    /// Load bias: run-time address = `base` + link-time address.
    pub base: usize,
    /// Its file (`/proc/self/exe` for the main program; the name the loader
    /// was given otherwise, which may be relative or no file at all).
    pub path: PathBuf,
    pub segments: Vec<Segment>,
    pub build_id: Option<Vec<u8>>,
}

impl Object {
    /// Whether `addr` lies in one of its segments.
    pub fn holds(&self, addr: usize) -> bool {
        self.segments.iter().any(|s| s.contains(addr, 1))
    }

    /// The file-backed bytes of the executable segment holding `addr`, from
    /// the segment's start.
    pub fn code_at(&self, addr: usize) -> Option<(usize, &[u8])> {
        let s = self
            .segments
            .iter()
            .find(|s| s.exec && addr >= s.start && addr - s.start < s.file_len)?;
        // SAFETY: a PT_LOAD segment is mapped readable for `p_memsz >=
        // p_filesz` bytes at `start` while its object is loaded, and the
        // object stays loaded while this `&self` lives (module doc). Bytes
        // are never written through this slice; the segment is executable
        // and, where `native` decodes it, checked not writable.
        let bytes = unsafe { std::slice::from_raw_parts(s.start as *const u8, s.file_len) };
        Some((s.start, bytes))
    }

    /// The 8 bytes at `addr` as they are now, if a segment maps all of them.
    pub fn word(&self, addr: usize) -> Option<u64> {
        self.segments.iter().find(|s| s.contains(addr, 8))?;
        if let Some(loader) = crate::got::original(addr) {
            return Some(loader as u64); // a slot `observe` rebound: the loader's value
        }
        // SAFETY: the 8 bytes lie inside a mapped PT_LOAD segment of a
        // loaded object (checked just above; module doc for why it stays
        // mapped); an unaligned read is used because relocated words need
        // not be aligned. A concurrent write from C code could tear the
        // value: then it names no loaded object or another one, and the
        // caller recomputes.
        Some(unsafe { std::ptr::read_unaligned(addr as *const u64) })
    }

    /// Every loaded segment's file-backed bytes, in order (for an object
    /// without a build ID).
    pub fn loaded_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.segments.iter().map(|s| {
            // SAFETY: as in `code_at`: mapped readable for `p_filesz` bytes
            // while the object is loaded.
            unsafe { std::slice::from_raw_parts(s.start as *const u8, s.file_len) }
        })
    }
}

/// How many objects the loader has closed since the process started.
pub fn unloads() -> u64 {
    let mut count = Count(0);
    // SAFETY: `count_unloads` matches the callback type and only uses
    // `data` as the `Count` passed here, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(count_unloads), (&raw mut count).cast::<c_void>());
    }
    count.0
}

struct Count(u64);

unsafe extern "C" fn count_unloads(
    info: *mut libc::dl_phdr_info,
    size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the `Count` passed to `dl_iterate_phdr`; `info` is
    // valid for this call, and `size` says how much of it the loader filled
    // (`dlpi_subs` only when it covers the field).
    let (count, info) = unsafe { (&mut *data.cast::<Count>(), &*info) };
    if size >= std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8 {
        count.0 = info.dlpi_subs;
    }
    1
}

/// Every loaded object, with the number of unloads at the time of the list.
pub fn objects() -> (u64, Vec<Object>) {
    let mut list = List {
        unloads: 0,
        objects: Vec::new(),
    };
    // SAFETY: `visit` matches the callback type and only uses `data` as the
    // `List` passed here, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), (&raw mut list).cast::<c_void>());
    }
    (list.unloads, list.objects)
}

struct List {
    unloads: u64,
    objects: Vec<Object>,
}

/// Called by the loader for each loaded object, under its lock.
unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, size: usize, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `List` passed to `dl_iterate_phdr`; `info` is
    // valid for this call (loader contract).
    let (list, info) = unsafe { (&mut *data.cast::<List>(), &*info) };
    if size >= std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8 {
        list.unloads = info.dlpi_subs;
    }
    let name = if info.dlpi_name.is_null() {
        &[][..]
    } else {
        // SAFETY: a non-NULL `dlpi_name` is a NUL-terminated string.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    let path = if name.is_empty() && list.objects.is_empty() {
        PathBuf::from("/proc/self/exe") // the main program comes first
    } else {
        PathBuf::from(OsStr::from_bytes(name))
    };
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader gives `dlpi_phnum` program headers there.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let base = info.dlpi_addr as usize;
    let mut object = Object {
        base,
        path,
        segments: Vec::new(),
        build_id: None,
    };
    for p in phdrs {
        let start = base.wrapping_add(p.p_vaddr as usize);
        if p.p_type == libc::PT_NOTE && object.build_id.is_none() && p.p_memsz > 0 {
            // SAFETY: a PT_NOTE segment is mapped readable for p_memsz
            // bytes at load address + p_vaddr while the object is loaded.
            let notes =
                unsafe { std::slice::from_raw_parts(start as *const u8, p.p_memsz as usize) };
            object.build_id = gnu_build_id(notes).map(<[u8]>::to_vec);
        } else if p.p_type == libc::PT_LOAD {
            object.segments.push(Segment {
                start,
                file_len: p.p_filesz.min(p.p_memsz) as usize,
                mem_len: p.p_memsz as usize,
                exec: p.p_flags & libc::PF_X != 0,
                write: p.p_flags & libc::PF_W != 0,
            });
        }
    }
    list.objects.push(object);
    0
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
