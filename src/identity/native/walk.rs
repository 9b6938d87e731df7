//! The identity of one native function: its machine code decoded from the
//! entry with iced-x86, following direct calls and jumps inside its object,
//! with every operand that depends on where things were placed replaced by
//! what it designates:
//!
//! * a branch target by the order in which the walk first reached it;
//! * a RIP-relative reference to code by the same; to read-only data by the
//!   bytes read (an access) or by the data around the address (an address
//!   taken: the symbol's extent, or the unnamed bytes between two symbols);
//! * a pointer the loader stores (a relocation) by what it points at: the
//!   object's own code or data as above, or an imported symbol by its name
//!   and the identity of the object the loader bound it to.
//!
//! Anything else — writable data of its object (what it holds at run time
//! is whatever code stored there, the module's init or another function:
//! not this function's code), an indirect call or jump not through a slot
//! the loader fills, a call through writable memory, a reference outside the object or
//! to an unknown place, more code or data than the limits — is refused, and
//! the caller keys the function by its whole object instead.
//!
//! The result depends only on the code graph, never on addresses: a
//! function whose code and callees are unchanged keeps its digest when
//! other functions of its object grow, shrink or move.
use std::collections::VecDeque;

use ahash::AHashMap;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind};

use super::image::{Image, Kind, Reloc, Target};
use super::loaded::Object;
use super::WalkStats as Stats;
use crate::identity::digest::{Digest, Hasher};

/// How much one walk may read before it gives up.
#[derive(Clone, Copy)]
pub struct Limits {
    pub instructions: usize,
    /// Distinct call targets and code addresses taken.
    pub functions: usize,
    /// Bytes of data hashed.
    pub data: usize,
}

pub const LIMITS: Limits = Limits {
    instructions: 20_000,
    functions: 256,
    data: 1 << 20,
};

/// How far before and after a taken address the data it may designate is
/// looked for: compilers fold small offsets into an address (one past the
/// end of an array, a base biased by an element or two).
const WINDOW: u64 = 64;

/// Why a walk stopped without a digest.
pub type Refusal = String;

/// The identity of the loaded object whose code holds a run-time address
/// (`None`: no loaded object holds it).
pub trait Objects {
    fn identity(&self, addr: usize) -> Option<Digest>;
}

// Markers written before each element of the stream.
const RUN: u8 = 1;
const ALIAS: u8 = 2;
const JOIN: u8 = 3;
const INSN: u8 = 4;
const INVALID: u8 = 5;
const CODE: u8 = 6;
const IMPORT: u8 = 7;
const NULL: u8 = 8;
const CONST: u8 = 9;
const SLOT: u8 = 11;
const DATA: u8 = 12;
const UNIT: u8 = 13;
const RESOLVED: u8 = 14;
const END: u8 = 15;

/// The digest of the function at link-time address `entry` of `object`.
pub fn walk(
    object: &Object,
    image: &Image,
    entry: u64,
    others: &dyn Objects,
    limits: Limits,
) -> Result<(Digest, Stats), Refusal> {
    let mut w = Walk {
        object,
        image,
        others,
        limits,
        h: Hasher::new(),
        stats: Stats::default(),
        targets: Vec::new(),
        target_ids: AHashMap::new(),
        runs: 0,
        decoded: AHashMap::new(),
        units: VecDeque::new(),
        unit_ids: AHashMap::new(),
    };
    w.h.str("x86-64 walk 1");
    w.code_target(entry, true)?;
    let (mut next_target, mut next_unit) = (0, 0);
    loop {
        if next_target < w.targets.len() {
            let t = w.targets[next_target];
            w.run(next_target as u32, t)?;
            next_target += 1;
        } else if let Some(&(s, u)) = w.units.get(next_unit) {
            w.unit(next_unit as u32, s, u)?;
            next_unit += 1;
        } else {
            break;
        }
    }
    w.h.u8(END);
    Ok((w.h.finish(), w.stats))
}

struct Walk<'a> {
    object: &'a Object,
    image: &'a Image,
    others: &'a dyn Objects,
    limits: Limits,
    h: Hasher,
    stats: Stats,
    /// Code addresses in the order first reached; the index is the id.
    targets: Vec<u64>,
    target_ids: AHashMap<u64, u32>,
    runs: u32,
    /// Instruction address -> (run, index in the run).
    decoded: AHashMap<u64, (u32, u32)>,
    /// Data units (section, unit) in the order first reached.
    units: VecDeque<(usize, usize)>,
    unit_ids: AHashMap<(usize, usize), u32>,
}

impl Walk<'_> {
    fn run_time(&self, addr: u64) -> usize {
        self.object.base.wrapping_add(addr as usize)
    }

    /// The id of code at `addr`, queued for decoding when new. A function
    /// (called, or its address taken) counts against the limit.
    fn code_target(&mut self, addr: u64, function: bool) -> Result<u32, Refusal> {
        if let Some(&id) = self.target_ids.get(&addr) {
            return Ok(id);
        }
        if self.object.code_at(self.run_time(addr)).is_none()
            || self
                .image
                .section(addr)
                .is_none_or(|s| s.kind != Kind::Code)
        {
            return Err(format!("a branch leaves its code (to {addr:#x})"));
        }
        if function {
            self.stats.functions += 1;
            if self.stats.functions > self.limits.functions {
                return Err(format!(
                    "it reaches more than {} functions",
                    self.limits.functions
                ));
            }
        }
        let id = self.targets.len() as u32;
        self.targets.push(addr);
        self.target_ids.insert(addr, id);
        Ok(id)
    }

    /// Decodes from code target `id` until control cannot fall through.
    fn run(&mut self, id: u32, addr: u64) -> Result<(), Refusal> {
        if let Some(&(run, index)) = self.decoded.get(&addr) {
            self.h.u8(ALIAS);
            self.h.u32(run);
            self.h.u32(index);
            return Ok(());
        }
        let run = self.runs;
        self.runs += 1;
        self.h.u8(RUN);
        self.h.u32(id);
        let Some((start, bytes)) = self.object.code_at(self.run_time(addr)) else {
            return Err(format!("no code at {addr:#x}"));
        };
        let offset = self.run_time(addr) - start;
        let mut decoder = Decoder::with_ip(64, &bytes[offset..], addr, DecoderOptions::NONE);
        let mut index = 0u32;
        let mut insn = Instruction::default();
        loop {
            let ip = decoder.ip();
            if let Some(&(r, i)) = self.decoded.get(&ip) {
                self.h.u8(JOIN);
                self.h.u32(r);
                self.h.u32(i);
                return Ok(());
            }
            if !decoder.can_decode() {
                // The segment ends: running on faults.
                self.h.u8(INVALID);
                return Ok(());
            }
            self.stats.instructions += 1;
            if self.stats.instructions > self.limits.instructions {
                return Err(format!(
                    "it has more than {} instructions",
                    self.limits.instructions
                ));
            }
            self.decoded.insert(ip, (run, index));
            index += 1;
            decoder.decode_out(&mut insn);
            let at = (ip - addr) as usize + offset;
            let raw = &bytes[at..at + insn.len()];
            if insn.is_invalid() {
                // Executing it traps: nothing after it runs on this path.
                self.h.u8(INVALID);
                self.h.bytes(raw);
                return Ok(());
            }
            let offsets = decoder.get_constant_offsets(&insn);
            let mut normal = [0u8; 16];
            normal[..raw.len()].copy_from_slice(raw);
            let rip = insn.is_ip_rel_memory_operand();
            if rip && offsets.has_displacement() {
                let o = offsets.displacement_offset();
                normal[o..o + offsets.displacement_size()].fill(0);
            }
            let branch = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::NearBranch64);
            if branch && offsets.has_immediate() {
                let o = offsets.immediate_offset();
                normal[o..o + offsets.immediate_size()].fill(0);
            }
            self.h.u8(INSN);
            self.h.bytes(&normal[..raw.len()]);
            let flow = insn.flow_control();
            match flow {
                FlowControl::IndirectBranch | FlowControl::IndirectCall => {
                    if !rip {
                        return Err(format!("an indirect {} at {ip:#x}", kind(flow)));
                    }
                    self.slot_branch(insn.ip_rel_memory_address(), flow)?;
                    if flow == FlowControl::IndirectBranch {
                        return Ok(());
                    }
                    continue;
                }
                _ if rip => {
                    let target = insn.ip_rel_memory_address();
                    if insn.mnemonic() == Mnemonic::Lea {
                        self.reference(target)?;
                    } else if matches!(
                        insn.mnemonic(),
                        Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc
                    ) && insn.op1_kind() == OpKind::Register
                    {
                        // A bit offset in a register addresses any byte.
                        return Err(format!("a bit string access at {ip:#x}"));
                    } else {
                        let size = insn.memory_size().size();
                        if size == 0 {
                            return Err(format!("an access of unknown size at {ip:#x}"));
                        }
                        self.access(target, size as u64)?;
                    }
                }
                _ => {}
            }
            match flow {
                FlowControl::Next | FlowControl::Interrupt => {}
                FlowControl::Return => return Ok(()),
                FlowControl::Exception => return Ok(()),
                FlowControl::UnconditionalBranch
                | FlowControl::ConditionalBranch
                | FlowControl::Call
                | FlowControl::XbeginXabortXend => {
                    if branch {
                        let target = insn.near_branch_target();
                        let t = self.code_target(target, flow == FlowControl::Call)?;
                        self.h.u8(CODE);
                        self.h.u32(t);
                    } else if flow != FlowControl::XbeginXabortXend {
                        return Err(format!("a far {} at {ip:#x}", kind(flow)));
                    }
                    if flow == FlowControl::UnconditionalBranch {
                        return Ok(());
                    }
                }
                FlowControl::IndirectBranch | FlowControl::IndirectCall => unreachable!(),
            }
        }
    }

    /// A call or jump through the 8 bytes at `slot`: only a slot the loader
    /// fills (an import, or a pointer in memory the program cannot write).
    fn slot_branch(&mut self, slot: u64, flow: FlowControl) -> Result<(), Refusal> {
        let section = self
            .image
            .section(slot)
            .ok_or_else(|| format!("an indirect {} through {slot:#x}", kind(flow)))?;
        let writable = section.kind == Kind::Writable;
        let relocs = self.image.relocs_in(slot..slot.saturating_add(8));
        let [reloc] = relocs else {
            return Err(format!(
                "an indirect {} through memory at {slot:#x}",
                kind(flow)
            ));
        };
        if reloc.at != slot {
            return Err(format!(
                "an indirect {} through memory at {slot:#x}",
                kind(flow)
            ));
        }
        match &reloc.target {
            Target::Symbol { .. } | Target::Resolved(_) => self.bound(reloc, true),
            Target::Own(_) if !writable => self.bound(reloc, true),
            _ => Err(format!(
                "an indirect {} through writable memory at {slot:#x}",
                kind(flow)
            )),
        }
    }

    /// What the loader stored at a relocation's place. `call`: it is
    /// jumped to, so an own address must be code.
    fn bound(&mut self, reloc: &Reloc, call: bool) -> Result<(), Refusal> {
        match &reloc.target {
            Target::Own(addr) => {
                if call {
                    let t = self.code_target(*addr, true)?;
                    self.h.u8(CODE);
                    self.h.u32(t);
                    Ok(())
                } else {
                    self.reference(*addr)
                }
            }
            Target::Resolved(resolver) => {
                // The resolver picks among implementations it names: walking
                // it reaches them all.
                let t = self.code_target(*resolver, true)?;
                self.h.u8(RESOLVED);
                self.h.u32(t);
                Ok(())
            }
            Target::Symbol { name, addend } => {
                if STATE_READERS.contains(&name.as_str()) {
                    return Err(format!(
                        "it calls `{name}`, which reads state its module's init may have set"
                    ));
                }
                let value = self
                    .object
                    .word(self.run_time(reloc.at))
                    .ok_or_else(|| format!("the slot of `{name}` is not mapped"))?
                    as usize;
                if value == 0 {
                    // An unresolved weak symbol.
                    self.h.u8(NULL);
                    self.h.str(name);
                    return Ok(());
                }
                if self.object.holds(value) {
                    // Bound to the object itself: what it points at there.
                    let own = value.wrapping_sub(self.object.base) as u64;
                    return if call {
                        let t = self.code_target(own, true)?;
                        self.h.u8(CODE);
                        self.h.u32(t);
                        Ok(())
                    } else {
                        self.reference(own)
                    };
                }
                let symbol = value.wrapping_sub(*addend as usize);
                let Some(identity) = self.others.identity(symbol) else {
                    return Err(format!("`{name}` is bound outside every loaded object"));
                };
                self.h.u8(IMPORT);
                self.h.str(name);
                self.h.i64(*addend);
                self.h.digest(identity);
                Ok(())
            }
            Target::Other(t) => Err(format!("a relocation of type {t} at {:#x}", reloc.at)),
        }
    }

    /// An instruction reads or writes `size` bytes at `addr`.
    fn access(&mut self, addr: u64, size: u64) -> Result<(), Refusal> {
        let image = self.image;
        let Some(section) = image.section(addr) else {
            return Err(format!("an access outside its sections ({addr:#x})"));
        };
        let end = addr.saturating_add(size);
        if end > section.range.end || section.kind == Kind::Code || section.metadata {
            return Err(format!("an access it cannot bound at {addr:#x}"));
        }
        if section.kind == Kind::Writable {
            return Err(writable(addr));
        }
        self.h.u8(CONST);
        match image.relocs_in(addr..end) {
            [] => {
                let from = (addr - section.range.start) as usize;
                if section.zero {
                    self.h.u64(size);
                } else {
                    let bytes = section
                        .bytes
                        .get(from..from + size as usize)
                        .ok_or_else(|| format!("data beyond its section at {addr:#x}"))?;
                    self.h.bytes(bytes);
                }
                Ok(())
            }
            [reloc] if reloc.at == addr && size == 8 => {
                self.h.u8(SLOT);
                self.bound(reloc, false)
            }
            _ => Err(format!("an access across a relocated pointer at {addr:#x}")),
        }
    }

    /// An address taken (or stored as a pointer): code by its walk; data by
    /// every unit near it.
    fn reference(&mut self, addr: u64) -> Result<(), Refusal> {
        let image = self.image;
        if let Some(s) = image.section(addr) {
            if s.kind == Kind::Code {
                let t = self.code_target(addr, true)?;
                self.h.u8(CODE);
                self.h.u32(t);
                return Ok(());
            }
        }
        let lo = addr.saturating_sub(WINDOW);
        let hi = addr.saturating_add(WINDOW);
        let mut near = Vec::new();
        let first = image.sections.partition_point(|s| s.range.end <= lo);
        for (si, s) in image.sections.iter().enumerate().skip(first) {
            if s.range.start > hi {
                break;
            }
            if s.kind == Kind::Code {
                continue;
            }
            let from = s.units.partition_point(|u| u.range.end <= lo);
            for (ui, u) in s.units.iter().enumerate().skip(from) {
                if u.range.start > hi {
                    break;
                }
                near.push((si, ui, u.range.start));
            }
        }
        if !near
            .iter()
            .any(|&(si, ui, _)| image.sections[si].units[ui].range.contains(&addr))
        {
            return Err(format!("an address in no data it can bound ({addr:#x})"));
        }
        self.h.u8(DATA);
        self.h.u64(near.len() as u64);
        for (si, ui, start) in near {
            let id = self.unit_id(si, ui)?;
            self.h.u32(id);
            self.h.i64(addr.wrapping_sub(start) as i64);
        }
        Ok(())
    }

    fn unit_id(&mut self, section: usize, unit: usize) -> Result<u32, Refusal> {
        if let Some(&id) = self.unit_ids.get(&(section, unit)) {
            return Ok(id);
        }
        let len = self.image.sections[section].units[unit].range.end
            - self.image.sections[section].units[unit].range.start;
        self.stats.data += len as usize;
        if self.stats.data > self.limits.data {
            return Err(format!(
                "it reaches more than {} bytes of data",
                self.limits.data
            ));
        }
        let id = self.units.len() as u32;
        self.units.push_back((section, unit));
        self.unit_ids.insert((section, unit), id);
        Ok(id)
    }

    /// A data unit: its kind, the name of a writable one, its initial image
    /// with each pointer the loader stores replaced by what it points at.
    fn unit(&mut self, id: u32, section: usize, unit: usize) -> Result<(), Refusal> {
        let image = self.image;
        let s = &image.sections[section];
        let u = &s.units[unit];
        self.h.u8(UNIT);
        self.h.u32(id);
        if s.kind == Kind::Writable {
            return Err(writable(u.range.start));
        }
        self.h.u8(s.kind as u8);
        let relocs = image.relocs_in(u.range.clone());
        if relocs
            .iter()
            .any(|r| r.at < u.range.start || r.at.saturating_add(8) > u.range.end)
        {
            return Err(format!(
                "a pointer across data units at {:#x}",
                u.range.start
            ));
        }
        let from = (u.range.start - s.range.start) as usize;
        let to = (u.range.end - s.range.start) as usize;
        if s.zero {
            self.h.u64((to - from) as u64);
        } else {
            let mut bytes = s
                .bytes
                .get(from..to)
                .ok_or_else(|| format!("data beyond its section at {:#x}", u.range.start))?
                .to_vec();
            for r in relocs {
                let o = (r.at - u.range.start) as usize;
                bytes[o..o + 8].fill(0);
            }
            self.h.bytes(&bytes);
        }
        for r in relocs {
            self.h.u64(r.at - u.range.start);
            self.bound(r, false)?;
        }
        Ok(())
    }
}

/// The C API that reaches what an extension module's init built — its
/// module state, its attributes, its types' module — rather than the
/// function's arguments: code other than the function's own (the init, an
/// exec slot) decides what it holds, so a function calling one of these is
/// keyed by its whole object. (A function's `self` is its module; the
/// arguments are keyed by content, so attribute access is refused for them
/// too: the walk cannot tell which object it is given.)
const STATE_READERS: &[&str] = &[
    "PyModule_GetState",
    "PyModule_GetDict",
    "PyModule_GetDef",
    "PyType_GetModule",
    "PyType_GetModuleState",
    "PyType_GetModuleByDef",
    "PyState_FindModule",
    "PyObject_GetAttr",
    "PyObject_GetAttrString",
    "PyObject_GetOptionalAttr",
    "PyObject_GetOptionalAttrString",
    "_PyObject_LookupAttr",
    "_PyObject_GetAttrId",
    "PyObject_GenericGetAttr",
    "PyObject_GenericGetDict",
    "PyObject_HasAttr",
    "PyObject_HasAttrString",
    "PyObject_HasAttrWithError",
    "PyObject_HasAttrStringWithError",
    "PyObject_Dir",
    "PyObject_CallMethod",
    "PyObject_CallMethodObjArgs",
    "PyObject_CallMethodNoArgs",
    "PyObject_CallMethodOneArg",
    "PyObject_VectorcallMethod",
    "_PyObject_CallMethod",
    "_PyObject_CallMethod_SizeT",
    "_PyObject_CallMethodId",
    "_PyObject_CallMethodIdObjArgs",
];

/// Writable data holds what the program stored there at run time, which
/// any code may have written (the module's init filling a table, setting a
/// variable): not the function's own code, so its object keys it.
fn writable(addr: u64) -> Refusal {
    format!("it uses writable data at {addr:#x}, which other code may have set")
}

fn kind(flow: FlowControl) -> &'static str {
    match flow {
        FlowControl::Call | FlowControl::IndirectCall => "call",
        _ => "jump",
    }
}
