//! The identity of native code loaded in this process: what a fingerprint
//! uses for a callee in one of the user's own extension modules or shared
//! libraries (installed libraries are keyed by distribution and version
//! instead).
//!
//! The code that runs is what was loaded, which need not be what is on disk
//! now (an extension rebuilt while a kernel keeps the old one), so identity
//! is read from memory. A function is keyed by its own code where that is
//! sound (`walk`: its machine code from the entry, the code it calls inside
//! its object, the constant data it uses, the symbols it imports and the
//! objects providing them), so an edit elsewhere in its object does not
//! invalidate it. Where the walk cannot bound what runs (an indirect call,
//! a reference it cannot bound, another architecture, no symbol tables to
//! trust), the function is keyed by its whole object: the GNU build ID note
//! the linker computed over the file, or, without one, the bytes of every
//! loaded segment (writable ones hold relocated pointers, so that digest
//! differs between processes: a miss, never a stale hit).
//!
//! Neither key covers what the program writes into its writable data at
//! run time: that is state, like a global variable mutated in Python.
//!
//! Linux only (`dl_iterate_phdr`); elsewhere native callees of the user's
//! own code cannot be fingerprinted and such calls are not memoized.
use crate::identity::digest::{Digest, Hasher};

mod callee;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod image;
#[cfg(target_os = "linux")]
mod loaded;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod walk;

pub use callee::{ctypes_function, entry, CtypesFunction};

/// Where a native callable starts, and how CPython calls it.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub addr: usize,
    /// The calling convention (`ml_flags`; a ctypes pointer's `_flags_`):
    /// the same code called another way computes something else.
    pub flags: i64,
}

/// What keys a native callee, and why it is not its own code.
#[derive(Clone, Debug)]
pub struct Identity {
    pub digest: Digest,
    /// `None`: keyed by its own code; otherwise why its whole object keys it.
    pub whole_object: Option<String>,
}

/// The identity of the code entered at run-time address `entry`, or `None`
/// when no loaded object holds it (generated code, a trampoline).
pub fn callee(entry: usize) -> Option<Identity> {
    imp::callee(entry)
}

/// The identity of the loaded object whose file is `path`, or `None` when
/// no loaded object has that file.
pub fn loaded_object(path: &std::path::Path) -> Option<Digest> {
    imp::loaded_object(path)
}

/// One walk of the function at `entry`, bypassing the per-address cache
/// (for the benches): how much it decoded, or why it stopped. `fresh`: the
/// object's file is read again too, as on the first walk into an object.
pub fn walk_once(entry: usize, fresh: bool) -> Result<WalkStats, String> {
    imp::walk_once(entry, fresh)
}

/// What one walk decoded.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkStats {
    pub instructions: usize,
    pub functions: usize,
    pub data: usize,
}

#[cfg(target_os = "linux")]
mod imp {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use ahash::AHashMap;

    use super::loaded::{self, Object};
    use super::{Digest, Hasher, Identity, WalkStats};

    /// Everything cached for the life of the process, dropped when the
    /// loader has closed any object (an address could then hold new code).
    struct State {
        unloads: u64,
        callees: AHashMap<usize, Identity>,
        /// Load bias -> the object's identity.
        objects: AHashMap<usize, Digest>,
        /// Load bias -> the key of a callee keyed by its whole object.
        wholes: AHashMap<usize, Digest>,
        #[cfg(target_arch = "x86_64")]
        images: AHashMap<usize, Result<Arc<super::image::Image>, String>>,
    }

    static STATE: Mutex<Option<State>> = Mutex::new(None);

    fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
        let unloads = loaded::unloads();
        let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
        let state = match guard.as_mut() {
            Some(s) if s.unloads == unloads => s,
            _ => guard.insert(State {
                unloads,
                callees: AHashMap::new(),
                objects: AHashMap::new(),
                wholes: AHashMap::new(),
                #[cfg(target_arch = "x86_64")]
                images: AHashMap::new(),
            }),
        };
        f(state)
    }

    pub fn callee(entry: usize) -> Option<Identity> {
        with_state(|state| {
            if let Some(id) = state.callees.get(&entry) {
                return Some(id.clone());
            }
            let (unloads, objects) = loaded::objects();
            let object = objects.iter().find(|o| o.holds(entry))?;
            let id = match own_code(state, &objects, object, entry) {
                Ok((d, _)) => {
                    let mut h = Hasher::new();
                    h.str("code");
                    h.digest(d);
                    Identity {
                        digest: h.finish(),
                        whole_object: None,
                    }
                }
                Err(why) => Identity {
                    digest: whole(state, &objects, object),
                    whole_object: Some(why),
                },
            };
            if unloads == state.unloads {
                state.callees.insert(entry, id.clone());
            }
            Some(id)
        })
    }

    pub fn loaded_object(path: &Path) -> Option<Digest> {
        let want = std::fs::canonicalize(path).ok()?;
        let (_, objects) = loaded::objects();
        // Cheap test first: only objects with the same file name are resolved.
        let object = objects.iter().find(|o| {
            o.path.file_name() == want.file_name()
                && std::fs::canonicalize(&o.path).ok().as_deref() == Some(want.as_path())
        })?;
        Some(with_state(|state| whole(state, &objects, object)))
    }

    /// The key of code keyed by its whole object: the object's identity
    /// and, where its dynamic relocations can be read, the identities of the
    /// objects its imports are bound to (a library of the user's that an
    /// extension calls is part of what runs). Once per object.
    fn whole(state: &mut State, objects: &[Object], object: &Object) -> Digest {
        if let Some(d) = state.wholes.get(&object.base) {
            return *d;
        }
        let mut h = Hasher::new();
        h.str("object");
        h.digest(identity(state, object));
        for p in providers(state, objects, object) {
            h.digest(p);
        }
        let d = h.finish();
        state.wholes.insert(object.base, d);
        d
    }

    /// The identities of the other objects that `object`'s imports are bound
    /// to, in order; an import bound outside every object by its address
    /// (a key of this process only).
    #[cfg(target_arch = "x86_64")]
    fn providers(state: &mut State, objects: &[Object], object: &Object) -> Vec<Digest> {
        use super::image::Target;

        let Ok(image) = image(state, object) else {
            return Vec::new();
        };
        let mut found = std::collections::BTreeSet::new();
        for r in &image.relocs {
            let Target::Symbol { addend, .. } = r.target else {
                continue;
            };
            let Some(value) = object.word(object.base.wrapping_add(r.at as usize)) else {
                continue;
            };
            let symbol = (value as usize).wrapping_sub(addend as usize);
            if value == 0 || object.holds(symbol) {
                continue;
            }
            match objects.iter().find(|o| o.holds(symbol)) {
                Some(o) => found.insert(identity(state, o)),
                None => found.insert(u128::from(value)),
            };
        }
        found.into_iter().collect()
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn providers(_: &mut State, _: &[Object], _: &Object) -> Vec<Digest> {
        Vec::new()
    }

    pub fn walk_once(entry: usize, fresh: bool) -> Result<WalkStats, String> {
        let (_, objects) = loaded::objects();
        let object = objects
            .iter()
            .find(|o| o.holds(entry))
            .ok_or("no loaded object holds it")?;
        with_state(|state| {
            #[cfg(target_arch = "x86_64")]
            if fresh {
                state.images.clear();
            }
            own_code(state, &objects, object, entry).map(|(_, s)| s)
        })
    }

    /// The build ID, or every loaded byte (computed once per object).
    fn identity(state: &mut State, object: &Object) -> Digest {
        *state.objects.entry(object.base).or_insert_with(|| {
            let mut h = Hasher::new();
            match &object.build_id {
                Some(id) => {
                    h.str("gnu-build-id");
                    h.bytes(id);
                }
                None => {
                    h.str("segments");
                    object.loaded_bytes().for_each(|b| h.bytes(b));
                }
            }
            h.finish()
        })
    }

    #[cfg(target_arch = "x86_64")]
    fn own_code(
        state: &mut State,
        objects: &[Object],
        object: &Object,
        entry: usize,
    ) -> Result<(Digest, WalkStats), String> {
        use super::walk::{self, Objects};

        let image = image(state, object)?;

        struct Others<'a> {
            objects: &'a [Object],
            state: std::cell::RefCell<&'a mut State>,
        }
        impl Objects for Others<'_> {
            fn identity(&self, addr: usize) -> Option<Digest> {
                let o = self.objects.iter().find(|o| o.holds(addr))?;
                Some(identity(&mut self.state.borrow_mut(), o))
            }
        }
        let others = Others {
            objects,
            state: std::cell::RefCell::new(state),
        };
        let link = entry.wrapping_sub(object.base) as u64;
        walk::walk(object, &image, link, &others, walk::LIMITS)
    }

    /// What the walk reads of the object's file (once per object).
    #[cfg(target_arch = "x86_64")]
    fn image(state: &mut State, object: &Object) -> Result<Arc<super::image::Image>, String> {
        state
            .images
            .entry(object.base)
            .or_insert_with(|| {
                let id = object.build_id.as_deref().ok_or("it has no build ID")?;
                if let Some(w) = writable_code(object) {
                    return Err(w.to_owned());
                }
                super::image::Image::read(&object.path, id, &object.segments, object.base)
                    .map(Arc::new)
                    .map_err(str::to_owned)
            })
            .clone()
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn own_code(
        _: &mut State,
        _: &[Object],
        _: &Object,
        _: usize,
    ) -> Result<(Digest, WalkStats), String> {
        Err("its code is not x86-64 (only x86-64 code is walked)".to_owned())
    }

    /// Why the object's code may change while it runs, if it may: a page
    /// of an executable segment mapped writable now (patched, or generated).
    #[cfg(target_arch = "x86_64")]
    fn writable_code(object: &Object) -> Option<&'static str> {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return Some("its mappings cannot be read");
        };
        for line in maps.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((lo, hi)) = range.split_once('-') else {
                continue;
            };
            let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            else {
                continue;
            };
            let overlaps = object
                .segments
                .iter()
                .filter(|s| s.exec)
                .any(|s| lo < s.start + s.mem_len && s.start < hi);
            if overlaps && perms.contains('w') {
                return Some("its code is mapped writable (patched or generated at run time)");
            }
        }
        None
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::path::Path;

    use super::{Digest, Identity, WalkStats};

    pub fn callee(_: usize) -> Option<Identity> {
        None
    }

    pub fn loaded_object(_: &Path) -> Option<Digest> {
        None
    }

    pub fn walk_once(_: usize, _: bool) -> Result<WalkStats, String> {
        Err("only Linux objects are read".to_owned())
    }
}
