//! Issue 23: the learn corpus natively (syscalls and network; this kernel has no BPF-LSM):
//! eight real programs learned over 3 runs, enforced over 10, new behaviours refused. The
//! corpus itself and its table are in `warden_integration_tests::corpus`; tests/lsm.rs runs it
//! inside the VMs with files and execs.
use warden_integration_tests::*;

#[test]
fn learned_profiles_of_real_programs_hold_and_refuse_what_is_new() {
    if !skip_unless(KERNEL) {
        return;
    }
    if let Some(tool) = corpus::missing_tool() {
        gate::skip(&format!(
            "the learn corpus needs Debian's `{tool}` (scripts/setup.sh installs the corpus's packages)"
        ));
        return;
    }
    // With BPF-LSM (run inside a VM, or a kernel that has it) files and execs are learned and
    // enforced too; this project's CI kernel has none, and lsm.rs runs the corpus in the VMs.
    corpus::corpus(corpus::bpf_lsm_works(), corpus::Share::All);
}
