//! Support for warden's end-to-end tests (tests/*.rs in this crate): a private containerd
//! with NRI and a CRI client ([`containerd`]).
pub mod containerd;
