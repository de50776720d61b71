//! What the running kernel offers: struct offsets (BTF) and which enforcement layers work.
pub mod btf;
pub mod probe;
