//! What the walk needs from an object's file: its sections (kind, bytes of
//! the data ones), the extents of the data its symbols name, and its dynamic
//! relocations. Read with the `object` crate, only after the file's build ID
//! and program headers were found equal to those of the loaded object: the
//! file is then the build that is running. No `unsafe` here.
//!
//! Addresses are link-time ones (run-time minus the load bias).
use std::fs::File;
use std::ops::Range;
use std::path::Path;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader};
use object::{
    Endianness, Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, ReadCache, RelocationFlags,
    RelocationTarget, SymbolKind,
};

use super::loaded::Segment;

/// Why an object's file cannot back a walk (the object keeps its build ID).
pub type Refusal = &'static str;

/// The initial data of an object is copied once per process: at most this
/// much (beyond it, the object keeps its build ID).
const MAX_DATA: u64 = 64 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Code,
    /// Never written at run time: read-only segments and RELRO.
    ReadOnly,
    /// Written at run time: only its initial image is in the file.
    Writable,
}

/// A run of data one symbol names, or the unnamed bytes between two (whose
/// parts cannot be told apart, so they go together).
#[derive(Debug)]
pub struct Unit {
    pub range: Range<u64>,
}

#[derive(Debug)]
pub struct Section {
    pub range: Range<u64>,
    pub kind: Kind,
    /// The initial image (empty for code and for zero-filled sections).
    pub bytes: Vec<u8>,
    pub zero: bool,
    /// Read by the loader or the unwinder only (symbols, relocations,
    /// unwind tables, notes): never data the walk accepts a reference to.
    pub metadata: bool,
    /// Cover the section, in order (empty for code and metadata).
    pub units: Vec<Unit>,
}

/// What a dynamic relocation stores at its place.
#[derive(Clone, Debug)]
pub enum Target {
    /// The object's own address (`R_X86_64_RELATIVE`).
    Own(u64),
    /// What the object's resolver function returns (`R_X86_64_IRELATIVE`).
    Resolved(u64),
    /// A symbol's address plus an addend, bound by the loader.
    Symbol { name: String, addend: i64 },
    /// A kind the walk does not model (TLS, ...).
    Other(u32),
}

#[derive(Debug)]
pub struct Reloc {
    pub at: u64,
    pub target: Target,
}

#[derive(Debug)]
pub struct Image {
    /// Allocated sections, by address.
    pub sections: Vec<Section>,
    /// By address.
    pub relocs: Vec<Reloc>,
}

impl Image {
    pub fn section(&self, addr: u64) -> Option<&Section> {
        let i = self.sections.partition_point(|s| s.range.end <= addr);
        self.sections.get(i).filter(|s| s.range.contains(&addr))
    }

    /// The relocations whose 8 bytes overlap `range`.
    pub fn relocs_in(&self, range: Range<u64>) -> &[Reloc] {
        let lo = self
            .relocs
            .partition_point(|r| r.at.saturating_add(8) <= range.start);
        let hi = self.relocs.partition_point(|r| r.at < range.end);
        &self.relocs[lo..hi.max(lo)]
    }

    /// Reads `path` if it is the loaded object with `build_id` and
    /// `segments` (at link-time addresses).
    pub fn read(
        path: &Path,
        build_id: &[u8],
        segments: &[Segment],
        base: usize,
    ) -> Result<Self, Refusal> {
        let file = File::open(path).map_err(|_| "its file cannot be opened")?;
        let cache = ReadCache::new(file);
        let elf =
            ElfFile64::<Endianness, _>::parse(&cache).map_err(|_| "its file is not 64-bit ELF")?;
        let e = elf.endian();
        if elf.elf_header().e_machine(e) != elf::EM_X86_64 {
            return Err("not x86-64 code");
        }
        if elf.elf_header().e_type(e) != elf::ET_DYN {
            // A fixed-address executable's code names data by absolute
            // addresses, which the walk would hash as numbers.
            return Err("it is not position-independent");
        }
        if elf.build_id().ok().flatten() != Some(build_id) {
            return Err("its file is not the build that is loaded (build IDs differ)");
        }
        let loads: Vec<_> = elf
            .elf_program_headers()
            .iter()
            .filter(|p| p.p_type(e) == elf::PT_LOAD)
            .collect();
        let same = loads.len() == segments.len()
            && loads.iter().zip(segments).all(|(p, s)| {
                p.p_vaddr(e) as usize == s.start.wrapping_sub(base)
                    && p.p_memsz(e) as usize == s.mem_len
                    && (p.p_flags(e) & elf::PF_X != 0) == s.exec
                    && (p.p_flags(e) & elf::PF_W != 0) == s.write
            });
        if !same {
            return Err("its file's segments differ from the loaded ones");
        }
        if loads
            .iter()
            .any(|p| p.p_flags(e) & elf::PF_X != 0 && p.p_flags(e) & elf::PF_W != 0)
        {
            return Err("it has writable code");
        }
        if elf
            .elf_program_headers()
            .iter()
            .any(|p| p.p_type(e) == elf::PT_TLS && p.p_filesz(e) > 0)
        {
            // Its code may read thread-local data at fixed offsets: the
            // initial image of that data would not be seen.
            return Err("it has initialized thread-local data");
        }
        let relro: Vec<Range<u64>> = elf
            .elf_program_headers()
            .iter()
            .filter(|p| p.p_type(e) == elf::PT_GNU_RELRO)
            .map(|p| p.p_vaddr(e)..p.p_vaddr(e).saturating_add(p.p_memsz(e)))
            .collect();
        // Only RELA relocations are read: a packed or implicit-addend form
        // would leave pointers in the image that the walk cannot see.
        const ANDROID_REL: u32 = 0x6000_0001;
        const ANDROID_RELA: u32 = 0x6000_0002;
        const ANDROID_RELR: u32 = 0x6fff_ff00;
        if elf.elf_section_table().iter().any(|s| {
            matches!(
                s.sh_type(e),
                elf::SHT_REL
                    | elf::SHT_RELR
                    | elf::SHT_CREL
                    | ANDROID_REL
                    | ANDROID_RELA
                    | ANDROID_RELR
            )
        }) {
            return Err("it has relocations in a form the walk does not read");
        }
        if elf.section_by_name(".gcc_except_table").is_some() {
            return Err("it has exception tables (landing pads are reached by the unwinder)");
        }
        let mut sections = Vec::new();
        let mut data = 0u64;
        for s in elf.sections() {
            let object::SectionFlags::Elf { sh_flags } = s.flags() else {
                continue;
            };
            // Thread-local templates are addressed through the thread
            // pointer, never at their section address (which may overlap).
            if sh_flags & u64::from(elf::SHF_ALLOC) == 0
                || sh_flags & u64::from(elf::SHF_TLS) != 0
                || s.size() == 0
            {
                continue;
            }
            let range = s.address()..s.address().saturating_add(s.size());
            let exec = sh_flags & u64::from(elf::SHF_EXECINSTR) != 0;
            let write = sh_flags & u64::from(elf::SHF_WRITE) != 0
                && !relro
                    .iter()
                    .any(|r| r.start <= range.start && range.end <= r.end);
            let kind = match (exec, write) {
                (true, _) => Kind::Code,
                (false, false) => Kind::ReadOnly,
                (false, true) => Kind::Writable,
            };
            let metadata = matches!(
                s.elf_section_header().sh_type(e),
                elf::SHT_NOTE
                    | elf::SHT_DYNSYM
                    | elf::SHT_STRTAB
                    | elf::SHT_HASH
                    | elf::SHT_GNU_HASH
                    | elf::SHT_GNU_VERSYM
                    | elf::SHT_GNU_VERDEF
                    | elf::SHT_GNU_VERNEED
                    | elf::SHT_RELA
                    | elf::SHT_DYNAMIC
                    | elf::SHT_X86_64_UNWIND
            ) || matches!(
                s.name(),
                Ok(".eh_frame" | ".eh_frame_hdr" | ".gnu_debuglink")
            );
            let zero = s.kind() == object::SectionKind::UninitializedData
                || s.kind() == object::SectionKind::UninitializedTls;
            let bytes = if kind == Kind::Code || zero || metadata {
                Vec::new()
            } else {
                data += s.size();
                if data > MAX_DATA {
                    return Err("it has more data than the walk reads");
                }
                s.data()
                    .map_err(|_| "a data section cannot be read")?
                    .to_vec()
            };
            sections.push(Section {
                range,
                kind,
                bytes,
                zero,
                metadata,
                units: Vec::new(),
            });
        }
        sections.sort_by_key(|s| s.range.start);
        if sections
            .windows(2)
            .any(|w| w[0].range.end > w[1].range.start)
        {
            return Err("its sections overlap");
        }
        let mut named: Vec<Range<u64>> = Vec::new();
        for table in [elf.symbols(), elf.dynamic_symbols()] {
            for sym in table {
                if matches!(
                    sym.kind(),
                    SymbolKind::Data | SymbolKind::Unknown | SymbolKind::Text
                ) && sym.size() > 0
                    && !sym.is_undefined()
                {
                    named.push(sym.address()..sym.address().saturating_add(sym.size()));
                }
            }
        }
        named.sort_by_key(|r| (r.start, r.end));
        for s in sections
            .iter_mut()
            .filter(|s| s.kind != Kind::Code && !s.metadata)
        {
            s.units = units(&s.range, &named);
        }
        let mut relocs = Vec::new();
        let dynsyms = elf.dynamic_symbol_table();
        for (at, r) in elf.dynamic_relocations().into_iter().flatten() {
            let RelocationFlags::Elf { r_type } = r.flags() else {
                continue;
            };
            let symbol = match r.target() {
                RelocationTarget::Symbol(i) => dynsyms
                    .and_then(|t| t.symbol_by_index(i).ok())
                    .and_then(|s| s.name().ok())
                    .map(str::to_owned),
                _ => None,
            };
            let addend = r.addend();
            let target = match (r_type, symbol) {
                (elf::R_X86_64_NONE, _) => continue,
                (elf::R_X86_64_RELATIVE, _) => Target::Own(addend as u64),
                (elf::R_X86_64_IRELATIVE, _) => Target::Resolved(addend as u64),
                (elf::R_X86_64_64, Some(name)) => Target::Symbol { name, addend },
                (elf::R_X86_64_GLOB_DAT | elf::R_X86_64_JUMP_SLOT, Some(name)) => {
                    Target::Symbol { name, addend: 0 }
                }
                (t, _) => Target::Other(t),
            };
            relocs.push(Reloc { at, target });
        }
        relocs.sort_by_key(|r| r.at);
        let image = Image { sections, relocs };
        if image
            .relocs
            .iter()
            .any(|r| image.section(r.at).is_none_or(|s| s.kind == Kind::Code))
        {
            return Err("it relocates its code (or outside its sections)");
        }
        Ok(image)
    }
}

/// The units covering `range`: each named extent (overlapping ones merged:
/// aliases, nested objects) and each unnamed gap between them.
fn units(range: &Range<u64>, named: &[Range<u64>]) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    let mut at = range.start;
    let inside = named
        .iter()
        .filter(|r| r.start < range.end && r.end > range.start && r.start < r.end);
    for r in inside {
        let (start, end) = (r.start.max(range.start), r.end.min(range.end));
        match out.last_mut() {
            Some(last) if start < last.range.end => {
                last.range.end = last.range.end.max(end);
                at = last.range.end;
                continue;
            }
            _ => {}
        }
        if start > at {
            out.push(Unit { range: at..start });
        }
        out.push(Unit { range: start..end });
        at = end;
    }
    if at < range.end {
        out.push(Unit {
            range: at..range.end,
        });
    }
    out
}
