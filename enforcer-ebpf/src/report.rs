//! Reporting: exact per-cgroup violation counters, the per-cgroup event rate window, and the
//! events sent to the daemon through the ring buffer.
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use warden_common::{kind, verdict, CgroupPolicy, Counters, Event, FileEvent, RateWindow, EVENT_PATH_MAX};

use crate::{
    globals::{global, EVENT_RATE_LIMIT},
    maps::{WARDEN_COUNTERS, WARDEN_EVENTS, WARDEN_RATE},
    verdict::Attempt,
};

/// Count a violation (exactly, per CPU) and send an event unless the cgroup's rate window is
/// spent or the ring buffer is full, in which case the drop is counted.
#[inline(always)]
pub(crate) fn report(cgid: u64, root: u64, pol: &CgroupPolicy, verdict: u8, a: &Attempt) {
    report_with(cgid, root, pol, verdict, a, 0, 0)
}

/// [`report`], with the deny-list entry (list id + 1, line) that refused the attempt.
#[inline(always)]
pub(crate) fn report_with(
    cgid: u64,
    root: u64,
    pol: &CgroupPolicy,
    verdict: u8,
    a: &Attempt,
    deny_list: u32,
    deny_line: u32,
) {
    let counters = match WARDEN_COUNTERS.get_ptr_mut(&root) {
        Some(c) => c,
        None => {
            let _ = WARDEN_COUNTERS.insert(&root, &Counters::default(), 0);
            match WARDEN_COUNTERS.get_ptr_mut(&root) {
                Some(c) => c,
                None => return,
            }
        }
    };
    let counters = unsafe { &mut *counters };
    if verdict != verdict::LEARNED {
        let k = a.kind as usize;
        if k < kind::COUNT {
            counters.violations[k] += 1;
        }
    }

    let now = unsafe { bpf_ktime_get_ns() };
    let limit = global(&EVENT_RATE_LIMIT);
    match WARDEN_RATE.get_ptr_mut(&root) {
        Some(w) => {
            let w = unsafe { &mut *w };
            if now.wrapping_sub(w.window_start_ns) >= 1_000_000_000 {
                w.window_start_ns = now;
                w.sent = 0;
            }
            if w.sent >= limit {
                counters.events_dropped += 1;
                return;
            }
            w.sent += 1;
        }
        None => {
            let _ = WARDEN_RATE.insert(&root, &RateWindow { window_start_ns: now, sent: 1 }, 0);
        }
    }

    // The event is written in place in the ring buffer, field by field: an Event built on the
    // stack first (88 bytes, then copied by the memcpy subprogram) put warden_socket_sendmsg
    // over 6.1's 512-byte limit for a program's stack plus its calls.
    let pid_tgid = if a.from_packet { 0 } else { bpf_get_current_pid_tgid() };
    let fill = |p: *mut Event| unsafe {
        (*p).cgroup_id = cgid;
        (*p).root_cgroup = root;
        (*p).ktime_ns = now;
        (*p).pid = pid_tgid as u32;
        (*p).tgid = (pid_tgid >> 32) as u32;
        (*p).profile_id = pol.profile_id;
        (*p).nr = a.nr;
        (*p).kind = a.kind;
        (*p).verdict = verdict;
        (*p).mode = pol.mode;
        (*p)._pad = 0;
        (*p).family = a.family;
        (*p).port = a.port;
        (*p).addr = a.addr;
        (*p).comm = [0; 16];
        if !a.from_packet {
            aya_ebpf::helpers::generated::bpf_get_current_comm((*p).comm.as_mut_ptr() as *mut _, 16);
        }
        (*p).deny_list = deny_list;
        (*p).deny_line = deny_line;
    };
    if a.kind == kind::FILE || a.kind == kind::EXEC {
        let Some(mut entry) = WARDEN_EVENTS.reserve::<FileEvent>(0) else {
            counters.events_dropped += 1;
            return;
        };
        let p = entry.as_mut_ptr();
        unsafe {
            fill(core::ptr::addr_of_mut!((*p).ev));
            let dst = (*p).path.as_mut_ptr();
            if aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                dst as *mut _,
                EVENT_PATH_MAX as u32,
                a.path as *const _,
            ) != 0
            {
                *dst = 0;
            }
            (*p).path[EVENT_PATH_MAX - 1] = 0;
        }
        entry.submit(0);
    } else {
        let Some(mut entry) = WARDEN_EVENTS.reserve::<Event>(0) else {
            counters.events_dropped += 1;
            return;
        };
        fill(entry.as_mut_ptr());
        entry.submit(0);
    }
    counters.events_sent += 1;
}
