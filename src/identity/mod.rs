//! Identity: content hashes of values and fingerprints of functions.
