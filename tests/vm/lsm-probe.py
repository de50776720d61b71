#!/usr/bin/env python3
"""Prove that BPF-LSM programs load, attach AND run on the running kernel.

No clang, bpftool or object file needed: the program is two raw instructions
(r0 = -EPERM; exit) loaded with the bpf() syscall as BPF_PROG_TYPE_LSM on the
`path_mkdir` hook (fallback `inode_mkdir`), whose BTF id is looked up in
/sys/kernel/btf/vmlinux. While attached, mkdir must fail with EPERM; after the
link is closed, mkdir must work again. That catches the case VM.md warns about
(attach succeeds but the hook never runs because `bpf` is not an active LSM).

Exit 0: BPF-LSM works. Exit 1: it does not (reason on stderr). Needs root.
Used by tests/vm/selftest.sh inside the VM kernels; on this machine's own kernel
it fails at load with EPERM (trampolines refused), which is the expected contrast.
"""
import ctypes
import errno
import os
import struct
import sys
import tempfile

SYS_BPF = 321  # x86-64
BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_LSM = 29
BPF_LSM_MAC = 27
BTF_KIND_FUNC = 12

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def fail(msg):
    print(f"lsm-probe: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    r = libc.syscall(SYS_BPF, cmd, buf, len(attr))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def btf_func_ids(path, wanted):
    """Map each wanted FUNC name to its BTF type id (vmlinux BTF)."""
    data = open(path, "rb").read()
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, _str_len = struct.unpack_from("<HBBIIIII", data, 0)
    if magic != 0xEB9F:
        fail(f"{path}: not BTF")
    types = hdr_len + type_off
    strs = hdr_len + str_off
    extra = {1: lambda v: 4, 3: lambda v: 12, 4: lambda v: 12 * v, 5: lambda v: 12 * v,
             6: lambda v: 8 * v, 13: lambda v: 8 * v, 14: lambda v: 4, 15: lambda v: 12 * v,
             17: lambda v: 4, 19: lambda v: 12 * v}
    found, off, tid = {}, types, 1
    while off < types + type_len:
        name_off, info, _ = struct.unpack_from("<III", data, off)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind == BTF_KIND_FUNC:
            end = data.index(b"\0", strs + name_off)
            name = data[strs + name_off:end].decode()
            if name in wanted:
                found[name] = tid
        off += 12 + extra.get(kind, lambda v: 0)(vlen)
        tid += 1
    return found


def main():
    lsm = open("/sys/kernel/security/lsm").read().strip()
    print(f"lsm-probe: active LSMs: {lsm}")
    if "bpf" not in lsm.split(","):
        fail("'bpf' is not in /sys/kernel/security/lsm (boot with lsm=...,bpf)")
    hooks = ["bpf_lsm_path_mkdir", "bpf_lsm_inode_mkdir"]
    ids = btf_func_ids("/sys/kernel/btf/vmlinux", hooks)
    hook = next((h for h in hooks if h in ids), None)
    if hook is None:
        fail(f"none of {hooks} in vmlinux BTF")

    base = tempfile.mkdtemp(prefix="lsm-probe.")  # before the program denies mkdir
    target = os.path.join(base, "denied")

    # r0 = -EPERM (BPF_ALU64|BPF_MOV|BPF_K, dst r0); exit
    insns = struct.pack("<BBhi", 0xB7, 0, 0, -errno.EPERM) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    insns_buf = ctypes.create_string_buffer(insns, len(insns))
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = bytearray(128)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_LSM, 2, ctypes.addressof(insns_buf),
                     ctypes.addressof(license), 1, len(log), ctypes.addressof(log))
    attr[48:48 + 12] = b"warden_probe"
    struct.pack_into("<I", attr, 68, BPF_LSM_MAC)     # expected_attach_type
    struct.pack_into("<I", attr, 108, ids[hook])      # attach_btf_id
    try:
        prog = bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        fail(f"BPF_PROG_LOAD lsm/{hook[8:]}: {e} (verifier log: {log.value.decode(errors='replace')!r})")
    print(f"lsm-probe: loaded lsm/{hook[8:]} (btf id {ids[hook]}) as fd {prog}")

    tp = bytearray(16)
    struct.pack_into("<QI", tp, 0, 0, prog)
    try:
        link = bpf(BPF_RAW_TRACEPOINT_OPEN, tp)
    except OSError as e:
        fail(f"attach (BPF_RAW_TRACEPOINT_OPEN): {e}")
    print(f"lsm-probe: attached, link fd {link}")

    try:
        os.mkdir(target)
        fail("mkdir succeeded while the program denying it was attached: the hook does not run")
    except PermissionError:
        print("lsm-probe: mkdir denied with EPERM while attached: the program runs")
    os.close(link)
    os.close(prog)
    os.mkdir(target)  # must work again once detached
    print("lsm-probe: mkdir works after detach")
    os.rmdir(target)
    os.rmdir(base)
    print("lsm-probe: OK: BPF-LSM programs load, attach and run")


if __name__ == "__main__":
    main()
