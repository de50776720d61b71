//! Builds the eBPF object (crate warden-ebpf, target bpfel-unknown-none) with aya-build and
//! leaves it in OUT_DIR, where the loader embeds it in the warden binary.
use anyhow::Context as _;
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../enforcer-ebpf")
        .canonicalize()
        .context("enforcer-ebpf folder")?;
    // The toolchain that compiles the eBPF crate (needs rust-src; scripts/setup.sh installs it).
    println!("cargo:rerun-if-env-changed=WARDEN_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("WARDEN_EBPF_TOOLCHAIN").unwrap_or_else(|_| "nightly".into());
    let root_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    // AYA_BUILD_SKIP=1 (e.g. the fuzz build, which only parses profiles): embed an empty
    // object; the loader refuses it with a clear error.
    if matches!(std::env::var("AYA_BUILD_SKIP").as_deref(), Ok("1") | Ok("true")) {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("warden");
        std::fs::write(out, b"")?;
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    aya_build::build_ebpf(
        [Package { name: "warden-ebpf", root_dir, ..Default::default() }],
        Toolchain::Custom(&toolchain),
    )
}
