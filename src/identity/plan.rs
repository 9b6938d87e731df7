//! Plans: a function's fingerprint computed once and reused while its guards
//! hold, so a call's key costs the arguments' hashing plus a few pointer
//! compares instead of a walk of everything the function reaches.
//!
//! A plan splits the fingerprint into a static digest (code, immutable
//! constants and globals, functions and classes reached, each watched by a
//! guard) and leaves: values that can change in place without any dict or
//! slot changing (a global list, a numpy array, an instance, a mutable
//! default). The static digest holds a placeholder for each leaf; leaves are
//! hashed by content on every call. Every key is computed this way, whether
//! the plan was just built or reused, so both give the same key.
//!
//! Class members are folded in only when reachable code can name them (see
//! [`Walker::finish`]); leaves found inside a member are hashed only when that
//! member is folded in.
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use ahash::{AHashMap, AHashSet};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::digest::{Digest, Hasher, Tag};
use super::guard::{self, Guards};
use super::hash::{
    patches, try_plain, try_plain_tuple, Dep, HResult, HashError, Member, Step, Unhashable, Unit,
    Used, Walker,
};

/// Bumped whenever the meaning of a digest changes, so old entries miss.
const KEY_VERSION: u64 = 5;

/// A value hashed by content on every call.
pub struct Leaf {
    pub obj: Py<PyAny>,
    /// Where it was found, outermost step first (global `rows` of `load`).
    pub site: Vec<Step>,
    /// The class member whose digest it is part of (hashed only when that
    /// member is folded in); `None`: always hashed.
    pub scope: Option<u32>,
    /// A dict read only by these constant keys: only those items are hashed
    /// (`None`: all of it).
    pub keys: Option<Vec<Py<PyAny>>>,
}

pub struct Plan {
    digest: Digest,
    leaves: Vec<Leaf>,
    /// Members not folded in at build time: folded in by a call whose
    /// arguments or leaves reach code that names them.
    pub(super) pending: Vec<Member>,
    pub(super) used: Used,
    pub(super) dynamic: bool,
    /// Top-level packages of the libraries the fingerprint reached.
    pub libraries: Vec<String>,
    /// Modules keyed as not loaded (imported in a body, not loaded yet);
    /// `None` for none.
    unloaded: Option<View>,
    /// Library units reached (sorted), whose patches are folded into every key.
    pub(super) units: Vec<Arc<Unit>>,
}

impl Plan {
    /// Whether code the fingerprint reached can use attribute `name`.
    pub fn names_attr(&self, name: &str) -> bool {
        self.dynamic || self.used.contains(name)
    }
}

/// A call's key, with what produced it.
pub struct Keyed {
    pub digest: Digest,
    /// The dependency record, when asked for.
    pub record: Option<Vec<Dep>>,
    /// Modules keyed as not loaded: a call that imports them does not
    /// mutate what it read (see `Memo.key`'s `before`). `None` for none.
    pub unloaded: Option<View>,
}

/// Modules keyed as not loaded whatever `sys.modules` says now.
pub type View = Rc<AHashSet<String>>;

/// A built plan (or the reason the function cannot be fingerprinted) and the
/// guards under which it stays valid.
pub struct Cached {
    pub guards: Guards,
    pub plan: Result<Rc<Plan>, Unhashable>,
    /// False when something was read that no guard watches.
    pub reusable: bool,
    /// The dependency record of the walk, when it was asked for: valid with
    /// the plan (the digests of leaves are filled in by each [`key`]).
    pub record: Option<Vec<Dep>>,
}

impl Cached {
    /// Every reference held, for the garbage collector.
    pub fn references(&self) -> impl Iterator<Item = &Py<PyAny>> {
        let leaves = self.plan.iter().flat_map(|p| {
            p.leaves
                .iter()
                .flat_map(|l| std::iter::once(&l.obj).chain(l.keys.iter().flatten()))
        });
        self.guards.references().chain(leaves)
    }
}

/// Walker state while a plan is built.
#[derive(Default)]
pub struct Building {
    pub guards: guard::Builder,
    leaves: Vec<Leaf>,
    index: AHashMap<(usize, Option<u32>), usize>,
    /// Where values being hashed now come from.
    pub site: Vec<Step>,
    /// The member whose digest is being computed.
    pub scope: Option<u32>,
}

impl Building {
    /// The index of `obj` as a leaf of the current scope, hashed whole.
    pub fn leaf(&mut self, obj: &Bound<'_, PyAny>) -> usize {
        let i = self.entry(obj);
        self.leaves[i].keys = None;
        i
    }

    /// The index of dict `obj` as a leaf of the current scope of which (at
    /// least) the items with `keys` are hashed.
    pub fn leaf_keys(&mut self, obj: &Bound<'_, PyAny>, keys: &[Py<PyAny>]) -> usize {
        let py = obj.py();
        let fresh = !self
            .index
            .contains_key(&(obj.as_ptr() as usize, self.scope));
        let i = self.entry(obj);
        let leaf = &mut self.leaves[i];
        if fresh {
            leaf.keys = Some(Vec::new());
        }
        if let Some(all) = leaf.keys.as_mut() {
            all.extend(keys.iter().map(|k| k.clone_ref(py)));
        }
        i
    }

    fn entry(&mut self, obj: &Bound<'_, PyAny>) -> usize {
        let key = (obj.as_ptr() as usize, self.scope);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.leaves.len();
        self.leaves.push(Leaf {
            obj: obj.clone().unbind(),
            site: self.site.clone(),
            scope: self.scope,
            keys: None,
        });
        self.index.insert(key, i);
        i
    }

    /// The index of `obj` if it is a leaf of the current scope.
    pub fn index_of(&self, obj: &Bound<'_, PyAny>) -> Option<usize> {
        self.index
            .get(&(obj.as_ptr() as usize, self.scope))
            .copied()
    }
}

fn python_version(py: Python<'_>) -> u64 {
    static VERSION: OnceLock<u64> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let v = py.version_info();
        u64::from(v.major) << 8 | u64::from(v.minor)
    })
}

/// Builds the plan of `func` (with its dependency record when asked),
/// keying the modules in `view` as not loaded.
pub fn build(
    func: &Bound<'_, PyAny>,
    record: bool,
    view: Option<View>,
) -> PyResult<(Cached, Option<Vec<Dep>>)> {
    let py = func.py();
    let walk = |annotations: bool| -> PyResult<(Walker<'_>, Hasher, HResult<()>)> {
        let mut w = Walker::new(py)?;
        w.plan = Some(Building {
            guards: guard::Builder::new(func),
            ..Building::default()
        });
        w.view = view.clone();
        w.annotations = annotations;
        if record {
            w.record = Some(Vec::new());
        }
        let mut h = Hasher::new();
        let walked = w.value(func, &mut h);
        Ok((w, h, walked))
    };
    let (mut w, mut h, mut walked) = walk(false)?;
    if walked.is_ok() && w.skipped_annotations && w.introspects() {
        // Code reached after some annotations were left out introspects
        // them: walk again with every function's annotations.
        (w, h, walked) = walk(true)?;
    }
    let building = w.plan.take().unwrap_or_default();
    let plan = match walked {
        Ok(()) => match w.fold_used(&mut h) {
            Ok(pending) => {
                let folded: AHashSet<u32> = w.folded_ids();
                let leaves = building
                    .leaves
                    .into_iter()
                    .map(|mut l| {
                        if l.scope.is_some_and(|id| folded.contains(&id)) {
                            l.scope = None;
                        }
                        l
                    })
                    .collect();
                Ok(Rc::new(Plan {
                    digest: h.finish(),
                    leaves,
                    pending,
                    used: std::mem::take(&mut w.used),
                    dynamic: w.dynamic,
                    libraries: std::mem::take(&mut w.libraries),
                    unloaded: view_of(std::mem::take(&mut w.unloaded)),
                    units: {
                        let mut units = std::mem::take(&mut w.units);
                        units.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                        units
                    },
                }))
            }
            Err(HashError::Unhashable(u)) => Err(*u),
            Err(HashError::Python(e)) => return Err(e),
        },
        Err(HashError::Unhashable(u)) => Err(*u),
        Err(HashError::Python(e)) => return Err(e),
    };
    let reusable = !building.guards.uncacheable;
    let record = w.record.take();
    Ok((
        Cached {
            guards: building.guards.finish(),
            plan,
            reusable,
            record: record.clone(),
        },
        record,
    ))
}

/// The key digest of a call: `plan`'s function with `arguments` (name,
/// value) in parameter order, minus those named in `ignore`. With a record
/// (from [`build`]), appends the arguments and fills in the digests of
/// globals hashed as leaves. Modules in `view` are keyed as not loaded.
pub fn key<'py>(
    py: Python<'py>,
    plan: &Rc<Plan>,
    arguments: impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    ignore: &[String],
    mut record: Option<Vec<Dep>>,
    view: Option<&View>,
) -> HResult<Keyed> {
    // A walker only when something is not a plain scalar (the common call
    // of a function with no mutable globals and scalar arguments needs none).
    let mut walker: Option<Walker<'py>> = None;
    let mut leaf_digests: Vec<Option<Digest>> = Vec::new();
    if record.is_some() {
        leaf_digests = vec![None; plan.leaves.len()];
    }
    let mut h = Hasher::new();
    h.tag(Tag::Key);
    h.u64(KEY_VERSION);
    h.u64(python_version(py));
    h.digest(plan.digest);
    if !plan.leaves.is_empty() {
        hash_leaves(
            lazy(&mut walker, py, plan, view)?,
            plan,
            None,
            &mut h,
            &mut leaf_digests,
        )?;
    }
    for (name, value) in arguments {
        let name = name.cast_into::<PyString>()?;
        let name = name.to_str()?;
        if ignore.iter().any(|i| i == name) {
            continue;
        }
        h.tag(Tag::Argument);
        h.str(name);
        // A scalar goes in as is (it starts with its value tag); anything
        // else as the digest of its walk, after `Tag::Nested`.
        let d = if try_plain(&value, &mut h)? {
            match record {
                Some(_) => {
                    let mut sub = Hasher::new();
                    try_plain(&value, &mut sub)?;
                    sub.finish()
                }
                None => 0,
            }
        } else {
            let mut sub = Hasher::new();
            if !try_plain_tuple(&value, &mut sub)? {
                sub = Hasher::new();
                lazy(&mut walker, py, plan, view)?
                    .value(&value, &mut sub)
                    .map_err(|e| e.at(Step::Argument(name.to_owned())))?;
            }
            let d = sub.finish();
            h.tag(Tag::Nested);
            h.digest(d);
            d
        };
        if let Some(r) = record.as_mut() {
            r.push(Dep {
                kind: "argument",
                name: name.to_owned(),
                display: None,
                digest: d,
                leaf: None,
            });
        }
    }
    // Without a walker nothing new can use a pending member.
    if let Some(w) = walker.as_mut() {
        for id in w.fold_pending(&mut h)? {
            hash_leaves(w, plan, Some(id), &mut h, &mut leaf_digests)?;
        }
        w.finish(&mut h)?;
    }
    let own_units = walker.as_ref().is_some_and(|w| !w.units.is_empty());
    if own_units || !patches::clean(py, &plan.units) {
        let w = lazy(&mut walker, py, plan, view)?;
        w.record = record.take();
        w.fold_units(&mut h)?;
        record = w.record.take();
    }
    for dep in record.iter_mut().flatten() {
        if let Some(d) = dep
            .leaf
            .and_then(|i| leaf_digests.get(i).copied().flatten())
        {
            dep.digest = d;
        }
    }
    // The plan's own set unless this call's walk met others.
    let mut unloaded = plan.unloaded.clone();
    if let Some(w) = walker.as_mut().filter(|w| !w.unloaded.is_empty()) {
        let mut names = std::mem::take(&mut w.unloaded);
        names.extend(plan.unloaded.iter().flat_map(|v| v.iter().cloned()));
        unloaded = view_of(names);
    }
    Ok(Keyed {
        digest: h.finish(),
        record,
        unloaded,
    })
}

/// The set of `names`, `None` when there are none.
fn view_of(names: Vec<String>) -> Option<View> {
    (!names.is_empty()).then(|| Rc::new(names.into_iter().collect()))
}

/// The walker in `slot`, created (extending `plan`) on first use.
fn lazy<'a, 'py>(
    slot: &'a mut Option<Walker<'py>>,
    py: Python<'py>,
    plan: &Rc<Plan>,
    view: Option<&View>,
) -> HResult<&'a mut Walker<'py>> {
    let w = match slot.take() {
        Some(w) => w,
        None => {
            let mut w = Walker::new(py)?;
            w.base = Some(plan.clone());
            w.view = view.cloned();
            w
        }
    };
    Ok(slot.insert(w))
}

/// Hashes the leaves of `scope` by content, in plan order.
fn hash_leaves(
    w: &mut Walker<'_>,
    plan: &Plan,
    scope: Option<u32>,
    h: &mut Hasher,
    digests: &mut [Option<Digest>],
) -> HResult<()> {
    for (i, leaf) in plan.leaves.iter().enumerate() {
        if leaf.scope != scope {
            continue;
        }
        let mut sub = Hasher::new();
        let obj = leaf.obj.bind(w.py());
        match (&leaf.keys, obj.cast::<PyDict>()) {
            (Some(keys), Ok(d)) => w.items_of(d, keys, &mut sub),
            _ => w.value(obj, &mut sub),
        }
        .map_err(|e| e.within(&leaf.site))?;
        let d = sub.finish();
        h.digest(d);
        if let Some(slot) = digests.get_mut(i) {
            *slot = Some(d);
        }
    }
    Ok(())
}
