//! The recording session: drives a sampler, tracks processes and mappings,
//! unwinds and aggregates each sample as it arrives, then symbolizes every
//! unique address once and builds a profile.
