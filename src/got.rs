//! Rebinding a loaded object's imports of a few libc functions: the entries
//! of its global offset table (GOT) that the dynamic linker filled for them
//! are overwritten with other functions of the same type. Native code calls
//! its imports through these entries, so the replacements see its calls.
//!
//! Linux only (ELF, `dl_iterate_phdr`), x86-64 and aarch64 (`Elf64_Rela`
//! relocations of type `GLOB_DAT` and `JUMP_SLOT`). Elsewhere nothing is
//! rebound and [`rebind_new`] reports it.
//!
//! Used by `observe` (which rebinds) and by `identity::native` (which reads
//! what the loader stored in a slot: [`original`] gives it the loader's
//! value, not ours).

/// What to rebind in an object: `(symbol, replacement address)`.
pub type Table<'a> = &'a [(&'a [u8], *const ())];

/// Which imports an object gets rebound, given its path.
pub type Choose = fn(name: &[u8]) -> Option<Table<'static>>;

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod elf {
    use super::{Choose, Table};
    use std::collections::{BTreeMap, BTreeSet};
    use std::ffi::{c_int, c_void, CStr};
    use std::sync::Mutex;

    #[cfg(target_arch = "x86_64")]
    const GLOB_DAT: u32 = 6;
    #[cfg(target_arch = "x86_64")]
    const JUMP_SLOT: u32 = 7;
    #[cfg(target_arch = "aarch64")]
    const GLOB_DAT: u32 = 1025;
    #[cfg(target_arch = "aarch64")]
    const JUMP_SLOT: u32 = 1026;

    const DT_NULL: i64 = 0;
    const DT_PLTRELSZ: i64 = 2;
    const DT_STRTAB: i64 = 5;
    const DT_SYMTAB: i64 = 6;
    const DT_RELA: i64 = 7;
    const DT_RELASZ: i64 = 8;
    const DT_STRSZ: i64 = 10;
    const DT_PLTREL: i64 = 20;
    const DT_JMPREL: i64 = 23;

    #[repr(C)]
    struct Dyn {
        tag: i64,
        val: u64,
    }

    #[repr(C)]
    struct Rela {
        offset: u64,
        info: u64,
        _addend: i64,
    }

    /// Objects already rebound (by load address), and the loader's counts of
    /// objects added and removed when they were last looked at.
    struct Seen {
        bases: BTreeSet<usize>,
        adds: u64,
        subs: u64,
    }

    /// Rebound slot -> what the loader had stored there.
    pub static ORIGINAL: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

    static SEEN: Mutex<Seen> = Mutex::new(Seen {
        bases: BTreeSet::new(),
        adds: u64::MAX,
        subs: u64::MAX,
    });

    struct Walk {
        choose: Choose,
        seen: *mut Seen,
        /// The loader's counts, taken at the first object of this walk.
        counts: Option<(u64, u64)>,
        rebound: usize,
    }

    pub fn rebind_new(choose: Choose) -> Result<usize, &'static str> {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        let mut walk = Walk {
            choose,
            seen: &mut *seen,
            counts: None,
            rebound: 0,
        };
        // SAFETY: `visit` only reads what the loader hands it for the
        // duration of the callback, and `walk` outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(visit), (&mut walk as *mut Walk).cast());
        }
        if let Some((adds, subs)) = walk.counts {
            seen.adds = adds;
            seen.subs = subs;
        }
        Ok(walk.rebound)
    }

    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the `Walk` of `rebind_new`, alive and exclusively
        // ours while dl_iterate_phdr runs (the `SEEN` lock is held).
        let walk = unsafe { &mut *data.cast::<Walk>() };
        // SAFETY: `seen` points into the guard `rebind_new` holds.
        let seen = unsafe { &mut *walk.seen };
        // SAFETY: the loader passes a valid `dl_phdr_info` for the callback.
        let info = unsafe { &*info };
        if walk.counts.is_none() {
            if seen.adds == info.dlpi_adds && seen.subs == info.dlpi_subs {
                return 1; // nothing loaded or unloaded since the last walk
            }
            walk.counts = Some((info.dlpi_adds, info.dlpi_subs));
        }
        let base = info.dlpi_addr as usize;
        if base != 0 && !seen.bases.insert(base) {
            return 0;
        }
        let name: &[u8] = if info.dlpi_name.is_null() {
            b""
        } else {
            // SAFETY: a NUL-terminated string the loader owns.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
        };
        if let Some(table) = (walk.choose)(name) {
            // SAFETY: `info` describes an object mapped now (the loader's
            // lock is held while we are called: it cannot be unloaded).
            walk.rebound += unsafe { rebind(info, table) };
        }
        0
    }

    /// Rebinds `table`'s symbols in one object; returns how many entries.
    ///
    /// # Safety
    /// `info` describes an object that stays mapped during the call.
    unsafe fn rebind(info: &libc::dl_phdr_info, table: Table<'_>) -> usize {
        let base = info.dlpi_addr as usize;
        // SAFETY: `dlpi_phdr` has `dlpi_phnum` entries (loader's contract).
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else {
            return 0;
        };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // What the loader made read-only: RELRO's whole pages only.
        let relro: Vec<(usize, usize)> = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_GNU_RELRO)
            .map(|p| {
                let start = base + p.p_vaddr as usize;
                (
                    start & !(page - 1),
                    (start + p.p_memsz as usize) & !(page - 1),
                )
            })
            .collect();
        // Pointers in the dynamic section: glibc rewrites them to addresses
        // when it loads an object, other loaders leave offsets.
        let at = |v: u64| -> usize {
            let v = v as usize;
            if v < base {
                base + v
            } else {
                v
            }
        };
        let (mut strtab, mut strsz, mut symtab) = (0usize, 0usize, 0usize);
        let (mut rela, mut relasz, mut jmprel, mut pltrelsz, mut pltrel) = (0, 0, 0, 0, DT_RELA);
        let mut d = (base + dynamic.p_vaddr as usize) as *const Dyn;
        // SAFETY: PT_DYNAMIC is an array of `Dyn` ending with DT_NULL, mapped
        // for the object's lifetime.
        unsafe {
            while (*d).tag != DT_NULL {
                let v = (*d).val;
                match (*d).tag {
                    DT_STRTAB => strtab = at(v),
                    DT_STRSZ => strsz = v as usize,
                    DT_SYMTAB => symtab = at(v),
                    DT_RELA => rela = at(v),
                    DT_RELASZ => relasz = v as usize,
                    DT_JMPREL => jmprel = at(v),
                    DT_PLTRELSZ => pltrelsz = v as usize,
                    DT_PLTREL => pltrel = v as i64,
                    _ => {}
                }
                d = d.add(1);
            }
        }
        if strtab == 0 || symtab == 0 || strsz == 0 {
            return 0;
        }
        let mut count = 0;
        let mut tables = vec![(rela, relasz)];
        if pltrel == DT_RELA {
            tables.push((jmprel, pltrelsz));
        }
        for (start, size) in tables {
            if start == 0 {
                continue;
            }
            let n = size / std::mem::size_of::<Rela>();
            // SAFETY: DT_RELA/DT_JMPREL point to `size` bytes of `Rela`
            // records in the mapped object.
            let relocs = unsafe { std::slice::from_raw_parts(start as *const Rela, n) };
            for r in relocs {
                let kind = (r.info & 0xffff_ffff) as u32;
                if kind != GLOB_DAT && kind != JUMP_SLOT {
                    continue;
                }
                let sym = (r.info >> 32) as usize;
                // SAFETY: the symbol index of a relocation is inside the
                // object's symbol table.
                let st_name =
                    unsafe { (*(symtab as *const libc::Elf64_Sym).add(sym)).st_name } as usize;
                if st_name >= strsz {
                    continue;
                }
                // SAFETY: `st_name` is an offset inside the string table
                // (checked against DT_STRSZ); its strings are NUL-terminated.
                let name =
                    unsafe { CStr::from_ptr((strtab + st_name) as *const libc::c_char) }.to_bytes();
                let Some(&(_, replacement)) = table.iter().find(|(s, _)| *s == name) else {
                    continue;
                };
                let slot = base + r.offset as usize;
                let in_relro = relro.iter().any(|&(s, e)| slot >= s && slot < e);
                // SAFETY: `slot` is a pointer-sized, aligned GOT entry of a
                // mapped object (the relocation's target); made writable
                // first where RELRO made it read-only, and read-only again
                // after. A word store is atomic on these targets: a thread
                // calling through it meanwhile gets the old or the new
                // function, both valid for the same signature.
                if unsafe { write_slot(slot, replacement as usize, in_relro, page) } {
                    count += 1;
                }
            }
        }
        count
    }

    /// # Safety
    /// `slot` is an aligned, pointer-sized GOT entry of a mapped object.
    unsafe fn write_slot(slot: usize, value: usize, in_relro: bool, page: usize) -> bool {
        let start = slot & !(page - 1);
        if in_relro {
            // SAFETY: the page holds the slot and is mapped (the object is).
            if unsafe {
                libc::mprotect(
                    start as *mut c_void,
                    page,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            } != 0
            {
                return false;
            }
        }
        // SAFETY: caller's contract; the page is writable now.
        let old = unsafe {
            (*(slot as *const std::sync::atomic::AtomicUsize))
                .swap(value, std::sync::atomic::Ordering::SeqCst)
        };
        if old != value {
            ORIGINAL
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(slot, old);
        }
        if in_relro {
            // SAFETY: as above; back to what RELRO made it (the page is
            // wholly inside RELRO's protected pages).
            unsafe { libc::mprotect(start as *mut c_void, page, libc::PROT_READ) };
        }
        true
    }
}

/// Rebinds, in every object loaded since the last call, the imports `choose`
/// picks for it; returns how many entries were rewritten.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn rebind_new(choose: Choose) -> Result<usize, &'static str> {
    elf::rebind_new(choose)
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub fn rebind_new(_choose: Choose) -> Result<usize, &'static str> {
    Err("native code's file opens are observed on x86-64 and aarch64 Linux only")
}

/// What the loader stored in `slot` before it was rebound here, or None
/// when it was not rebound.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn original(slot: usize) -> Option<usize> {
    elf::ORIGINAL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&slot)
        .copied()
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub fn original(_slot: usize) -> Option<usize> {
    None
}
