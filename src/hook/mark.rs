//! Per-code-object decision, cached in `co_extra`.
//!
//! The value stored in our `co_extra` slot is a tagged integer (no free
//! function is registered):
//!
//! ```text
//! bit 0      1 (so a stored value is never 0 = "never classified")
//! bit 1      marked
//! bits 2..18 number of argument slots (named params + *args + **kwargs)
//! bits 32..  generation of the callbacks the decision was made with
//! ```
//!
//! Bumping the generation (new callbacks, `hook_reset_marks`) makes every
//! cached decision stale at once. Marking is per code object: closures that
//! share one code object share the decision made for the first of them.

const PRESENT: usize = 1;
const MARKED: usize = 2;
const NARGS_SHIFT: u32 = 2;
const NARGS_MASK: usize = 0xFFFF;
const GEN_SHIFT: u32 = 32;

const _: () = assert!(
    usize::BITS == 64,
    "the co_extra encoding needs 64-bit pointers"
);

/// A cached decision for one code object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Never intercept.
    Skip,
    /// Intercept; the first `nargs` localsplus slots are the arguments.
    Marked { nargs: usize },
}

/// Encodes `decision` made under `generation`.
pub fn encode(decision: Decision, generation: u32) -> usize {
    let tag = match decision {
        Decision::Skip => 0,
        Decision::Marked { nargs } if nargs <= NARGS_MASK => MARKED | (nargs << NARGS_SHIFT),
        Decision::Marked { .. } => 0,
    };
    PRESENT | tag | ((generation as usize) << GEN_SHIFT)
}

/// The stored value meaning "not marked" under `generation` (the fast path
/// compares against it).
#[inline]
pub fn skip_value(generation: u32) -> usize {
    PRESENT | ((generation as usize) << GEN_SHIFT)
}

/// Decodes a stored value; `None` when absent or from another generation.
#[inline]
pub fn decode(value: usize, generation: u32) -> Option<Decision> {
    if value & PRESENT == 0 || (value >> GEN_SHIFT) as u32 != generation {
        return None;
    }
    Some(if value & MARKED != 0 {
        Decision::Marked {
            nargs: (value >> NARGS_SHIFT) & NARGS_MASK,
        }
    } else {
        Decision::Skip
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for g in [1, 7, u32::MAX] {
            assert_eq!(decode(encode(Decision::Skip, g), g), Some(Decision::Skip));
            for n in [0, 1, 5, 0xFFFF] {
                let d = Decision::Marked { nargs: n };
                assert_eq!(decode(encode(d, g), g), Some(d));
            }
            assert_eq!(
                decode(encode(Decision::Marked { nargs: 0x10000 }, g), g),
                Some(Decision::Skip)
            );
        }
        assert_eq!(encode(Decision::Skip, 9), skip_value(9));
        assert_eq!(decode(0, 1), None);
        assert_eq!(decode(encode(Decision::Skip, 1), 2), None);
    }
}
