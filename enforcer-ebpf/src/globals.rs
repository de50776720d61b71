//! Read-only globals, set by the loader from the running kernel's BTF (kernel struct offsets:
//! Rust eBPF has no CO-RE) and from the daemon's configuration. Userspace sets them by symbol
//! name, so the names must not change.
#[no_mangle]
pub(crate) static OFF_CGROUP_KN: u64 = 0;
#[no_mangle]
pub(crate) static OFF_KERNFS_NODE_ID: u64 = 0;
#[no_mangle]
pub(crate) static OFF_CGROUP_PARENT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_CGROUP_ROOT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_CGROUP_ROOT_HIERARCHY_ID: u64 = 0;
#[no_mangle]
pub(crate) static OFF_TASK_TI_STATUS: u64 = 0;
#[no_mangle]
pub(crate) static OFF_FILE_F_PATH: u64 = 0;
#[no_mangle]
pub(crate) static OFF_FILE_F_MODE: u64 = 0;
#[no_mangle]
pub(crate) static OFF_FILE_F_INODE: u64 = 0;
#[no_mangle]
pub(crate) static OFF_INODE_I_MODE: u64 = 0;
#[no_mangle]
pub(crate) static OFF_BPRM_FILE: u64 = 0;
#[no_mangle]
pub(crate) static OFF_PATH_MNT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_PATH_DENTRY: u64 = 0;
#[no_mangle]
pub(crate) static OFF_DENTRY_PARENT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_DENTRY_NAME_LEN: u64 = 0;
#[no_mangle]
pub(crate) static OFF_DENTRY_NAME: u64 = 0;
#[no_mangle]
pub(crate) static OFF_VFSMOUNT_ROOT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_MOUNT_MNT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_MOUNT_PARENT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_MOUNT_MOUNTPOINT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_MOUNT_NS: u64 = 0;
#[no_mangle]
pub(crate) static OFF_TASK_FS: u64 = 0;
#[no_mangle]
pub(crate) static OFF_FS_ROOT: u64 = 0;
#[no_mangle]
pub(crate) static NET_OFFSETS_OK: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCKET_SK: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_FAMILY: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_STATE: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_NUM: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_DADDR: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_RCV_SADDR: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_V6_DADDR: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_V6_RCV_SADDR: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_PROT: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_TYPE: u64 = 0;
#[no_mangle]
pub(crate) static OFF_SOCK_PROTOCOL: u64 = 0;
#[no_mangle]
pub(crate) static OFF_PROTO_BIND: u64 = 0;
#[no_mangle]
pub(crate) static OFF_MSGHDR_NAME: u64 = 0;
#[no_mangle]
pub(crate) static OFF_MSGHDR_NAMELEN: u64 = 0;
#[no_mangle]
pub(crate) static EVENT_RATE_LIMIT: u64 = 1000;

#[inline(always)]
pub(crate) fn global(v: &'static u64) -> u64 {
    unsafe { core::ptr::read_volatile(v) }
}
