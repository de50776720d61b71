//! Kernel struct offsets from the running kernel's BTF. Rust eBPF has no CO-RE, so the
//! programs get these as read-only globals at load time; one eBPF object then serves every
//! kernel (struct layouts differ between versions and configs).
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use btf_rs::{Btf, BtfType, Type};

/// The offsets warden's programs need, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KernelOffsets {
    pub cgroup_kn: u64,
    pub kernfs_node_id: u64,
    pub cgroup_parent: u64,
    pub cgroup_root: u64,
    pub cgroup_root_hierarchy_id: u64,
    /// x86_64 only: task_struct.thread_info.status (TS_COMPAT).
    pub task_ti_status: u64,
    /// Files and execs (BPF-LSM programs).
    pub files: FileOffsets,
    /// The network BPF-LSM programs; None when this kernel's BTF lacks one of them (those
    /// programs then judge nothing, and the loader says so).
    pub net: Option<NetOffsets>,
}

/// Offsets the network LSM programs need (struct socket, sock, proto, msghdr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct NetOffsets {
    pub socket_sk: u64,
    pub sock_family: u64,
    pub sock_state: u64,
    pub sock_num: u64,
    pub sock_daddr: u64,
    pub sock_rcv_saddr: u64,
    pub sock_v6_daddr: u64,
    pub sock_v6_rcv_saddr: u64,
    pub sock_prot: u64,
    pub sock_type: u64,
    pub sock_protocol: u64,
    pub proto_bind: u64,
    pub msghdr_name: u64,
    pub msghdr_namelen: u64,
}

impl NetOffsets {
    pub fn from_btf(btf: &Btf) -> Result<Self> {
        let common = |m: &str| member_offset(btf, "sock", &["__sk_common", m]);
        Ok(Self {
            socket_sk: member_offset(btf, "socket", &["sk"])?,
            sock_family: common("skc_family")?,
            sock_state: common("skc_state")?,
            sock_num: common("skc_num")?,
            sock_daddr: common("skc_daddr")?,
            sock_rcv_saddr: common("skc_rcv_saddr")?,
            sock_v6_daddr: common("skc_v6_daddr")?,
            sock_v6_rcv_saddr: common("skc_v6_rcv_saddr")?,
            sock_prot: common("skc_prot")?,
            sock_type: member_offset(btf, "sock", &["sk_type"])?,
            sock_protocol: member_offset(btf, "sock", &["sk_protocol"])?,
            proto_bind: member_offset(btf, "proto", &["bind"])?,
            msghdr_name: member_offset(btf, "msghdr", &["msg_name"])?,
            msghdr_namelen: member_offset(btf, "msghdr", &["msg_namelen"])?,
        })
    }
}

/// Offsets the file and exec programs need (struct file, linux_binprm, path, dentry, mount,
/// fs_struct). `f_path` is at 16 on 6.1 and 64 on 6.18/7.2, for example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct FileOffsets {
    pub file_f_path: u64,
    pub file_f_mode: u64,
    pub file_f_inode: u64,
    pub inode_i_mode: u64,
    pub bprm_file: u64,
    pub path_mnt: u64,
    pub path_dentry: u64,
    pub dentry_parent: u64,
    pub dentry_name_len: u64,
    pub dentry_name: u64,
    pub vfsmount_root: u64,
    pub mount_mnt: u64,
    pub mount_parent: u64,
    pub mount_mountpoint: u64,
    pub mount_ns: u64,
    pub task_fs: u64,
    pub fs_root: u64,
}

impl FileOffsets {
    pub fn from_btf(btf: &Btf) -> Result<Self> {
        Ok(Self {
            file_f_path: member_offset(btf, "file", &["f_path"])?,
            file_f_mode: member_offset(btf, "file", &["f_mode"])?,
            file_f_inode: member_offset(btf, "file", &["f_inode"])?,
            inode_i_mode: member_offset(btf, "inode", &["i_mode"])?,
            bprm_file: member_offset(btf, "linux_binprm", &["file"])?,
            path_mnt: member_offset(btf, "path", &["mnt"])?,
            path_dentry: member_offset(btf, "path", &["dentry"])?,
            dentry_parent: member_offset(btf, "dentry", &["d_parent"])?,
            dentry_name_len: member_offset(btf, "dentry", &["d_name", "len"])?,
            dentry_name: member_offset(btf, "dentry", &["d_name", "name"])?,
            vfsmount_root: member_offset(btf, "vfsmount", &["mnt_root"])?,
            mount_mnt: member_offset(btf, "mount", &["mnt"])?,
            mount_parent: member_offset(btf, "mount", &["mnt_parent"])?,
            mount_mountpoint: member_offset(btf, "mount", &["mnt_mountpoint"])?,
            mount_ns: member_offset(btf, "mount", &["mnt_ns"])?,
            task_fs: member_offset(btf, "task_struct", &["fs"])?,
            fs_root: member_offset(btf, "fs_struct", &["root"])?,
        })
    }
}

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

impl KernelOffsets {
    pub fn from_running_kernel() -> Result<Self> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!(
                "{} is missing: this kernel has no BTF. warden needs a kernel built with \
                 CONFIG_DEBUG_INFO_BTF=y (all mainstream distribution kernels since 2021)",
                path.display()
            );
        }
        let btf = Btf::from_file(path).with_context(|| format!("parsing {}", path.display()))?;
        let self_off = member_offset(&btf, "cgroup", &["self"])?;
        if self_off != 0 {
            // The mkdir program treats the parent css pointer as the parent cgroup.
            bail!("struct cgroup: member `self` at offset {self_off}, expected 0");
        }
        Ok(Self {
            cgroup_kn: member_offset(&btf, "cgroup", &["kn"])?,
            kernfs_node_id: member_offset(&btf, "kernfs_node", &["id"])?,
            cgroup_parent: member_offset(&btf, "cgroup", &["self", "parent"])?,
            cgroup_root: member_offset(&btf, "cgroup", &["root"])?,
            cgroup_root_hierarchy_id: member_offset(&btf, "cgroup_root", &["hierarchy_id"])?,
            task_ti_status: if cfg!(target_arch = "x86_64") {
                member_offset(&btf, "task_struct", &["thread_info", "status"])?
            } else {
                0
            },
            files: FileOffsets::from_btf(&btf).context("offsets for the file and exec programs")?,
            net: match NetOffsets::from_btf(&btf) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!("network BPF-LSM programs disabled: {e:#}");
                    None
                }
            },
        })
    }
}

/// Byte offset of `path` (nested member names) inside struct `name`. Anonymous struct and
/// union members are searched through, as C does.
pub fn member_offset(btf: &Btf, name: &str, path: &[&str]) -> Result<u64> {
    let ty = btf
        .resolve_types_by_name(name)
        .with_context(|| format!("BTF has no type named {name}"))?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
        .ok_or_else(|| anyhow!("BTF has no struct {name}"))?;
    let mut bits = 0u64;
    let mut cur = ty;
    for (i, want) in path.iter().enumerate() {
        let (off, next) = find_member(btf, &cur, want)?
            .ok_or_else(|| anyhow!("struct {name} has no member {}", path[..=i].join(".")))?;
        bits += off;
        cur = next;
    }
    if !bits.is_multiple_of(8) {
        bail!("{name}.{} is a bitfield", path.join("."));
    }
    Ok(bits / 8)
}

/// Finds member `want` in struct/union `ty`; returns (bit offset, member type with typedefs
/// and qualifiers resolved).
fn find_member(btf: &Btf, ty: &Type, want: &str) -> Result<Option<(u64, Type)>> {
    let members = match ty {
        Type::Struct(s) => &s.members,
        Type::Union(u) => &u.members,
        _ => return Ok(None),
    };
    for m in members {
        let mname = match m.get_name_offset() {
            Some(off) if off != 0 => btf.resolve_name(m).unwrap_or_default(),
            _ => String::new(),
        };
        let mty = resolve(btf, btf.resolve_chained_type(m)?)?;
        if mname == want {
            return Ok(Some((m.bit_offset() as u64, mty)));
        }
        if mname.is_empty() {
            if let Some((off, t)) = find_member(btf, &mty, want)? {
                return Ok(Some((m.bit_offset() as u64 + off, t)));
            }
        }
    }
    Ok(None)
}

/// The parameter types of kernel function `name`, each as a short signature (`ptr struct file`,
/// `int 4`, `ptr void`, ...), typedefs and qualifiers resolved. Used to check that a
/// `security_<hook>` function takes what the BPF-LSM hook's programs read (issue 18).
pub fn function_signature(btf: &Btf, name: &str) -> Result<Vec<String>> {
    let f = btf
        .resolve_types_by_name(name)
        .with_context(|| format!("BTF has no function {name}"))?
        .into_iter()
        .find_map(|t| match t {
            Type::Func(f) => Some(f),
            _ => None,
        })
        .ok_or_else(|| anyhow!("BTF has no function {name}"))?;
    let Type::FuncProto(proto) = btf.resolve_chained_type(&f)? else { bail!("{name} has no prototype in BTF") };
    proto
        .parameters
        .iter()
        .map(|p| {
            let ty = resolve(btf, btf.resolve_chained_type(p)?)?;
            Ok(match &ty {
                Type::Ptr(ptr) => format!("ptr {}", shallow(btf, &resolve(btf, btf.resolve_chained_type(ptr)?)?)),
                t => shallow(btf, t),
            })
        })
        .collect()
}

/// A type's kind and, for structs, unions and ints, its name or size.
fn shallow(btf: &Btf, t: &Type) -> String {
    match t {
        Type::Struct(s) => format!("struct {}", btf.resolve_name(s).unwrap_or_default()),
        Type::Union(u) => format!("union {}", btf.resolve_name(u).unwrap_or_default()),
        Type::Int(i) => format!("int {}", i.size()),
        other => other.name().to_string(),
    }
}

fn resolve(btf: &Btf, mut ty: Type) -> Result<Type> {
    for _ in 0..16 {
        ty = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t)?,
            Type::Volatile(t) => btf.resolve_chained_type(t)?,
            Type::Const(t) => btf.resolve_chained_type(t)?,
            Type::Restrict(t) => btf.resolve_chained_type(t)?,
            Type::TypeTag(t) => btf.resolve_chained_type(t)?,
            _ => return Ok(ty),
        };
    }
    Ok(ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_kernel_offsets_are_plausible() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF}");
            return;
        }
        let o = KernelOffsets::from_running_kernel().unwrap();
        // kernfs_node.id and cgroup.kn exist on every kernel since 5.5 and are never at 0
        // except kn... keep the assertions to what is structurally certain.
        assert!(o.cgroup_kn > 0);
        assert!(o.cgroup_root > o.cgroup_kn);
        assert!(o.cgroup_parent > 0 && o.cgroup_parent < o.cgroup_kn);
        // struct qstr: { u32 hash; u32 len; } in a union, then the name pointer.
        assert_eq!(o.files.dentry_name, o.files.dentry_name_len + 4);
        assert_eq!(o.files.path_dentry, o.files.path_mnt + 8);
        assert!(o.files.file_f_path > 0);
        let n = o.net.expect("the network offsets");
        // sock_common: skc_daddr then skc_rcv_saddr (one __addrpair); skc_dport then skc_num.
        assert_eq!(n.sock_rcv_saddr, n.sock_daddr + 4);
        assert!(n.sock_num > 0 && n.sock_v6_rcv_saddr > n.sock_num);
        // Two neighbouring u16 (sk_protocol comes first on 6.18; the order is not fixed).
        assert_eq!(n.sock_protocol.abs_diff(n.sock_type), 2);
        assert_eq!(n.msghdr_namelen, n.msghdr_name + 8);
    }
}
