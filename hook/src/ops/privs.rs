//! Least privilege. At start warden checks it has the capabilities it needs to load its
//! programs and says precisely which are missing; once the programs are loaded and the
//! long-lived files and sockets are open, it keeps only what confining and releasing new
//! containers needs, in the effective, permitted and bounding sets, and sets no_new_privs.
//!
//! What the running daemon does after the drop, and what that needs (measured on kernel 6.18
//! by the least-privilege integration test: a new container is confined after the drop):
//! - map updates and deletes, pinning and unpinning links: operations on map and link fds
//!   it already holds and on its own root-owned bpffs folder. On kernels before 6.6 every
//!   bpf() command checks CAP_BPF (or CAP_SYS_ADMIN) when unprivileged BPF is disabled, so
//!   CAP_BPF stays.
//! - attaching the network programs to a new container's cgroup (BPF_LINK_CREATE on a cgroup
//!   for cgroup_sock and cgroup_sock_addr programs): CAP_NET_ADMIN.
//! - attaching the sys_enter raw tracepoint and the BPF-LSM programs when the first container
//!   needs them (loaded at start, attached on demand): CAP_PERFMON for the tracing links
//!   (CAP_BPF and CAP_PERFMON together are what the kernel asks of tracing programs).
//! - opening cgroup directories, reading profiles, writing learned profiles: files owned by
//!   root, which the daemon's uid 0 reaches without CAP_DAC_*.
//!
//! Measured: on kernel 6.18 every one of these works with no capability at all (since 6.6 the
//! checks sit at map creation and program load); the three are kept for older kernels, where
//! every bpf() command checks CAP_BPF while unprivileged BPF is disabled and attaching checks
//! CAP_NET_ADMIN (cgroup programs) and CAP_PERFMON (tracing). On Debian's 6.1 (VM) the BPF-LSM
//! pod case passes with the three.
//!
//! Dropped: CAP_SYS_ADMIN (only needed to load: the probe's securityfs mount; kept on kernels
//! without CAP_BPF), and everything else root has (CAP_SETPCAP goes last, after the bounding
//! set is trimmed).
use anyhow::{bail, Context as _, Result};
use caps::{CapSet, Capability, CapsHashSet};
use tracing::{info, warn};

/// Needed to start: load the programs, create and pin the maps (see packaging/warden.service).
/// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (and is the only way before 5.8).
pub const NEEDED_AT_START: &[Capability] = &[Capability::CAP_BPF, Capability::CAP_PERFMON, Capability::CAP_NET_ADMIN];

/// Wanted at start but not required on kernels >= 5.8: the probe mounts securityfs where it
/// is not mounted, and the BPF-LSM layer has not been verified without it (warden.service).
pub const WANTED_AT_START: &[Capability] = &[Capability::CAP_SYS_ADMIN];

/// Kept by the running daemon (see the module documentation for why each).
pub const KEPT: &[Capability] = &[Capability::CAP_BPF, Capability::CAP_PERFMON, Capability::CAP_NET_ADMIN];

fn set_of(caps: &[Capability]) -> CapsHashSet {
    caps.iter().copied().collect()
}

fn names(caps: impl IntoIterator<Item = Capability>) -> String {
    let mut v: Vec<String> = caps.into_iter().map(|c| c.to_string()).collect();
    v.sort();
    v.join(", ")
}

/// Refuses to start without every capability of [`NEEDED_AT_START`] in the effective set
/// (CAP_SYS_ADMIN counts for CAP_BPF and CAP_PERFMON, as in the kernel); warns about
/// [`WANTED_AT_START`].
pub fn check_start() -> Result<()> {
    let eff = caps::read(None, CapSet::Effective).context("reading this process's capabilities")?;
    let admin = eff.contains(&Capability::CAP_SYS_ADMIN);
    let missing: Vec<Capability> = NEEDED_AT_START
        .iter()
        .copied()
        .filter(|c| !(eff.contains(c) || (admin && matches!(c, Capability::CAP_BPF | Capability::CAP_PERFMON))))
        .collect();
    for c in WANTED_AT_START.iter().filter(|c| !eff.contains(c)) {
        warn!("{c} missing: fine on kernels >= 5.8 for the syscall and network layers; needed to mount securityfs for the \
               BPF-LSM probe where it is not mounted, and the BPF-LSM layer is not verified without it");
    }
    if !missing.is_empty() {
        bail!(
            "missing capabilities: {} (warden run needs {}: to load and pin its eBPF programs and attach them to \
             container cgroups; run it as root, or grant them, e.g. the CapabilityBoundingSet of packaging/warden.service)",
            names(missing),
            names(NEEDED_AT_START.iter().copied())
        );
    }
    Ok(())
}

/// Keeps only [`KEPT`] in the effective, permitted and bounding sets (and clears the
/// inheritable and ambient ones), and sets no_new_privs. Capabilities are per thread: call
/// before the daemon starts any other thread, so every thread inherits the reduced sets.
pub fn drop_to_kept() -> Result<()> {
    let mut keep = set_of(KEPT);
    // A kernel before 5.8 has no CAP_BPF or CAP_PERFMON: there CAP_SYS_ADMIN is what every
    // bpf() command checks, so it stays.
    if !caps::runtime::thread_all_supported().contains(&Capability::CAP_BPF) {
        keep.insert(Capability::CAP_SYS_ADMIN);
    }
    // no_new_privs first: nothing this process might exec can gain privileges.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_NO_NEW_PRIVS)");
    }
    let bounding = caps::read(None, CapSet::Bounding).context("reading the bounding set")?;
    let extra: Vec<Capability> = bounding.difference(&keep).copied().collect();
    // Trimming the bounding set needs CAP_SETPCAP, which is dropped just after. Under a
    // systemd unit whose CapabilityBoundingSet lacks it the bounding set is already the unit's.
    if !extra.is_empty() {
        if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
            for c in &extra {
                caps::drop(None, CapSet::Bounding, *c)
                    .with_context(|| format!("dropping {c} from the bounding set"))?;
            }
        } else {
            warn!(kept_in_bounding = %names(extra.iter().copied()),
                  "no CAP_SETPCAP: the bounding set keeps these (harmless with no_new_privs, but narrow CapabilityBoundingSet)");
        }
    }
    caps::clear(None, CapSet::Ambient).context("clearing the ambient set")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable set")?;
    let permitted = caps::read(None, CapSet::Permitted)?;
    let keep_now: CapsHashSet = keep.intersection(&permitted).copied().collect();
    caps::set(None, CapSet::Effective, &keep_now).context("setting the effective set")?;
    caps::set(None, CapSet::Permitted, &keep_now).context("setting the permitted set")?;
    info!(kept = %names(keep_now.iter().copied()), "capabilities dropped to what confining new containers needs; no_new_privs set");
    Ok(())
}

/// The kept set as the kernel prints it in /proc/PID/status (CapEff, CapPrm, CapBnd).
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0u64, |m, c| m | c.bitmask())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_is_a_subset_of_what_start_needs_and_its_mask() {
        assert!(KEPT.iter().all(|c| NEEDED_AT_START.contains(c)));
        assert!(!KEPT.contains(&Capability::CAP_SYS_ADMIN));
        // CAP_NET_ADMIN = 12, CAP_PERFMON = 38, CAP_BPF = 39.
        assert_eq!(kept_mask(), (1 << 12) | (1 << 38) | (1 << 39));
    }
}
