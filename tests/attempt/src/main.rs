//! `warden-attempt`: performs named attempts and reports exactly what happened, one line each,
//! so tests read as a list of attempts and results (in the spirit of youki's runtimetest).
//!
//! Usage:
//!   warden-attempt ACTION [ARGS...]   one attempt; prints `ok` or `errno=NAME`
//!   warden-attempt serve               reads `ACTION ARGS...` lines on stdin, answers each
//!   warden-attempt seq 'A ARGS' 'B'... runs each attempt in order, printing `A ARGS => result`
//!                                      (for container entrypoints: the log is the report)
//!
//! A process killed by warden never answers: the caller sees the signal in its exit status.
//! Actions are raw syscalls through libc so nothing else runs between the attempt and its
//! report.
use std::io::{BufRead as _, Write as _};
use std::net::{IpAddr, SocketAddr};

fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENOSYS => "ENOSYS",
        libc::EROFS => "EROFS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EXDEV => "EXDEV",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EAGAIN => "EAGAIN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EINPROGRESS => "EINPROGRESS",
        _ => return format!("errno={e}"),
    };
    format!("errno={name}")
}

fn result(rc: libc::c_long) -> String {
    if rc < 0 {
        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        "ok".to_string()
    }
}

fn sockaddr(addr: &str, port: &str) -> Result<SocketAddr, String> {
    let ip: IpAddr = addr.parse().map_err(|_| format!("bad address {addr}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Builds a raw sockaddr for libc calls.
fn raw_addr(sa: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        SocketAddr::V4(a) => {
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn family(sa: &SocketAddr) -> i32 {
    if sa.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// socket + connect (tcp) and close; returns the connect result.
fn connect(sa: &SocketAddr) -> String {
    unsafe {
        let fd = libc::socket(family(sa), libc::SOCK_STREAM, 0);
        if fd < 0 {
            return result(-1);
        }
        let (ss, len) = raw_addr(sa);
        let rc = libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len);
        let r = result(rc as libc::c_long);
        libc::close(fd);
        r
    }
}

fn udp_send(sa: &SocketAddr) -> String {
    unsafe {
        let fd = libc::socket(family(sa), libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return result(-1);
        }
        let (ss, len) = raw_addr(sa);
        let msg = b"warden";
        let rc =
            libc::sendto(fd, msg.as_ptr() as *const _, msg.len(), 0, &ss as *const _ as *const libc::sockaddr, len);
        let r = result(rc as libc::c_long);
        libc::close(fd);
        r
    }
}

fn bind(sa: &SocketAddr, ty: i32) -> String {
    unsafe {
        let fd = libc::socket(family(sa), ty, 0);
        if fd < 0 {
            return result(-1);
        }
        let (ss, len) = raw_addr(sa);
        let rc = libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len);
        let r = result(rc as libc::c_long);
        libc::close(fd);
        r
    }
}

fn socket(fam: i32, ty: i32, proto: i32) -> String {
    unsafe {
        let fd = libc::socket(fam, ty, proto);
        let r = result(fd as libc::c_long);
        if fd >= 0 {
            libc::close(fd);
        }
        r
    }
}

const IPPROTO_SCTP: i32 = 132;
const IPPROTO_UDPLITE: i32 = 136;
const IPPROTO_MPTCP: i32 = 262;

/// Listening sockets kept open by `listen-nobind` and `bind-listen` (serve mode), so that the
/// test can try to reach them from outside the confined cgroup; closed when the helper exits.
static LISTENERS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn parse_ip(addr: &str) -> Result<IpAddr, String> {
    addr.parse().map_err(|_| format!("bad address {addr}"))
}

/// An ICMP echo through an unprivileged "ping" socket (SOCK_DGRAM + IPPROTO_ICMP/ICMPV6; needs
/// net.ipv4.ping_group_range to include our gid). `ok` only when the echo reply came back;
/// `errno=...` when the socket could not be made, `send:errno=...` when the send failed,
/// `no-reply` after 2 s without an answer.
fn ping(addr: &str) -> Result<String, String> {
    let ip = parse_ip(addr)?;
    let sa = SocketAddr::new(ip, 0);
    let (proto, echo, reply) =
        if ip.is_ipv4() { (libc::IPPROTO_ICMP, 8u8, 0u8) } else { (libc::IPPROTO_ICMPV6, 128, 129) };
    unsafe {
        let fd = libc::socket(family(&sa), libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto);
        if fd < 0 {
            return Ok(result(-1));
        }
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        // type, code, checksum and identifier are filled in by the kernel for ping sockets.
        let pkt: [u8; 14] = [echo, 0, 0, 0, 0, 0, 0, 1, b'w', b'a', b'r', b'd', b'e', b'n'];
        let (ss, len) = raw_addr(&sa);
        let rc =
            libc::sendto(fd, pkt.as_ptr() as *const _, pkt.len(), 0, &ss as *const _ as *const libc::sockaddr, len);
        if rc < 0 {
            let r = format!("send:{}", result(-1));
            libc::close(fd);
            return Ok(r);
        }
        let mut buf = [0u8; 256];
        let n = libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0);
        let r = if n < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e == libc::EAGAIN {
                "no-reply".to_string()
            } else {
                format!("recv:{}", errno_name(e))
            }
        } else if n > 0 && buf[0] == reply {
            "ok".to_string()
        } else {
            format!("unexpected-reply type={}", buf[0])
        };
        libc::close(fd);
        Ok(r)
    }
}

/// The local port of socket `fd`.
fn local_port(fd: i32) -> u16 {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    unsafe { libc::getsockname(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) };
    // sin_port and sin6_port are at the same offset.
    let sin = unsafe { &*(&ss as *const _ as *const libc::sockaddr_in) };
    u16::from_be(sin.sin_port)
}

/// TCP listen() on socket `fd`, kept open: `listening PORT`, or `errno=...`.
fn listen_kept(fd: i32) -> String {
    let rc = unsafe { libc::listen(fd, 8) };
    if rc < 0 {
        let r = result(-1);
        unsafe { libc::close(fd) };
        return r;
    }
    let port = local_port(fd);
    LISTENERS.lock().unwrap_or_else(|e| e.into_inner()).push(fd);
    format!("listening {port}")
}

/// listen() on a TCP socket that was never bound: the kernel picks an ephemeral port
/// (inet_csk_listen_start -> get_port(sk, 0)) without running any bind hook.
fn listen_nobind(v6: bool) -> String {
    let fam = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return result(-1);
    }
    listen_kept(fd)
}

/// bind(ADDR:PORT) then listen(), kept open.
fn bind_listen(sa: &SocketAddr) -> String {
    unsafe {
        let fd = libc::socket(family(sa), libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return result(-1);
        }
        let (ss, len) = raw_addr(sa);
        if libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) < 0 {
            let r = format!("bind:{}", result(-1));
            libc::close(fd);
            return r;
        }
        listen_kept(fd)
    }
}

/// bind() of an ICMP/ICMPv6 socket of type `ty` (SOCK_RAW or SOCK_DGRAM, a ping socket).
fn bind_other(sa: &SocketAddr, ty: i32) -> String {
    let proto = if sa.is_ipv4() { libc::IPPROTO_ICMP } else { libc::IPPROTO_ICMPV6 };
    unsafe {
        let fd = libc::socket(family(sa), ty | libc::SOCK_CLOEXEC, proto);
        if fd < 0 {
            return format!("socket:{}", result(-1));
        }
        let (ss, len) = raw_addr(sa);
        let r = result(libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) as libc::c_long);
        libc::close(fd);
        r
    }
}

/// A socket of protocol `proto` (not TCP or UDP), then a connect (stream) or a sendto
/// (datagram) to `sa`. `unsupported:errno=...` when this kernel lacks the protocol, so a
/// missing module is never mistaken for a denial.
fn other_proto(sa: &SocketAddr, ty: i32, proto: i32) -> String {
    unsafe {
        let fd = libc::socket(family(sa), ty | libc::SOCK_CLOEXEC, proto);
        if fd < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e == libc::EPROTONOSUPPORT || e == libc::ESOCKTNOSUPPORT {
                return format!("unsupported:{}", errno_name(e));
            }
            return errno_name(e);
        }
        let (ss, len) = raw_addr(sa);
        let rc = if ty == libc::SOCK_DGRAM {
            let msg = b"warden";
            libc::sendto(fd, msg.as_ptr() as *const _, msg.len(), 0, &ss as *const _ as *const libc::sockaddr, len)
                as libc::c_long
        } else {
            libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) as libc::c_long
        };
        let r = result(rc);
        libc::close(fd);
        r
    }
}

/// A 32-bit compat syscall (int 0x80) from 64-bit code: getpid is 20 in the i386 table.
#[cfg(target_arch = "x86_64")]
fn int80_getpid() -> String {
    let ret: i64;
    unsafe { std::arch::asm!("int 0x80", inlateout("rax") 20i64 => ret, options(nostack)) };
    if ret < 0 {
        errno_name((-ret) as i32)
    } else {
        "ok".into()
    }
}
#[cfg(not(target_arch = "x86_64"))]
fn int80_getpid() -> String {
    "unsupported".into()
}

/// mount("none", DIR, "tmpfs", 0, NULL) through the 32-bit entry (int 0x80, ia32 number 21;
/// native 21 is `access`). The strings go to a page below 4 GiB: ia32 pointers are 32 bits.
#[cfg(target_arch = "x86_64")]
fn int80_mount_tmpfs(dir: &str) -> String {
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    let base = page as *mut u8;
    let put = |off: usize, s: &str| -> u64 {
        let bytes = s.as_bytes();
        assert!(off + bytes.len() < 4096, "path too long for the page");
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(off), bytes.len());
            *base.add(off + bytes.len()) = 0;
        }
        base as u64 + off as u64
    };
    let (src, fs, dst) = (put(0, "none"), put(16, "tmpfs"), put(32, dir));
    let ret: i64;
    unsafe {
        std::arch::asm!(
            "push rbx",
            "mov rbx, {src}",
            "int 0x80",
            "pop rbx",
            src = in(reg) src,
            inlateout("rax") 21i64 => ret,
            in("rcx") dst,
            in("rdx") fs,
            in("rsi") 0u64,
            in("rdi") 0u64,
        )
    };
    if ret < 0 {
        errno_name((-ret) as i32)
    } else {
        "ok".into()
    }
}
#[cfg(not(target_arch = "x86_64"))]
fn int80_mount_tmpfs(_dir: &str) -> String {
    "unsupported".into()
}

fn write_file(path: &str, data: &str) -> String {
    match std::fs::write(path, data) {
        Ok(()) => "ok".into(),
        Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
    }
}

fn run(args: &[&str]) -> String {
    let need = |n: usize| -> Result<(), String> {
        if args.len() < n {
            Err(format!("usage error: {} needs {} argument(s)", args[0], n - 1))
        } else {
            Ok(())
        }
    };
    let r: Result<String, String> = (|| {
        Ok(match args[0] {
            "getpid" => result(unsafe { libc::syscall(libc::SYS_getpid) }),
            // spin THREADS: threads that make syscalls (getppid; open+close of PATH, default
            // /dev/null, which the file hooks judge) in a tight loop until the process ends.
            // For the hook attach/detach stress test: syscalls in flight on every CPU.
            "spin" => {
                need(2)?;
                let n: usize = args[1].parse().map_err(|_| "usage error: spin THREADS [PATH]".to_string())?;
                let path = std::ffi::CString::new(args.get(2).copied().unwrap_or("/dev/null")).unwrap();
                for _ in 0..n {
                    let path = path.clone();
                    std::thread::spawn(move || loop {
                        unsafe {
                            libc::syscall(libc::SYS_getppid);
                            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                            if fd >= 0 {
                                libc::close(fd);
                            }
                        }
                    });
                }
                "ok".into()
            }
            "unshare-uts" => result(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS) }),
            "mkdir" => {
                need(2)?;
                let c = std::ffi::CString::new(args[1]).unwrap();
                result(unsafe { libc::syscall(libc::SYS_mkdir, c.as_ptr(), 0o755) })
            }
            "connect" => {
                need(3)?;
                connect(&sockaddr(args[1], args[2])?)
            }
            "udp-send" => {
                need(3)?;
                udp_send(&sockaddr(args[1], args[2])?)
            }
            "bind-tcp" => {
                need(3)?;
                bind(&sockaddr(args[1], args[2])?, libc::SOCK_STREAM)
            }
            "bind-udp" => {
                need(3)?;
                bind(&sockaddr(args[1], args[2])?, libc::SOCK_DGRAM)
            }
            "raw-socket" => socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
            // Escapes through protocols without cgroup hooks (issue 15).
            "ping4" | "ping6" => {
                need(2)?;
                ping(args[1])?
            }
            // bind() of sockets whose protocol has its own bind (no cgroup bind hook runs):
            // a raw ICMP socket to ADDR, a ping socket to ADDR and identifier PORT.
            // `socket:errno=...` when the socket itself is refused.
            "raw-bind" => {
                need(2)?;
                bind_other(&sockaddr(args[1], "0")?, libc::SOCK_RAW)
            }
            "ping-bind" => {
                need(3)?;
                bind_other(&sockaddr(args[1], args[2])?, libc::SOCK_DGRAM)
            }
            "listen-nobind" => listen_nobind(false),
            "listen-nobind6" => listen_nobind(true),
            "bind-listen" => {
                need(3)?;
                bind_listen(&sockaddr(args[1], args[2])?)
            }
            "close-listeners" => {
                for fd in LISTENERS.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                    unsafe { libc::close(fd) };
                }
                "ok".into()
            }
            "sctp-connect" => {
                need(3)?;
                other_proto(&sockaddr(args[1], args[2])?, libc::SOCK_STREAM, IPPROTO_SCTP)
            }
            "udplite-send" => {
                need(3)?;
                other_proto(&sockaddr(args[1], args[2])?, libc::SOCK_DGRAM, IPPROTO_UDPLITE)
            }
            "mptcp-connect" => {
                need(3)?;
                other_proto(&sockaddr(args[1], args[2])?, libc::SOCK_STREAM, IPPROTO_MPTCP)
            }
            "packet-socket" => socket(libc::AF_PACKET, libc::SOCK_RAW, 0),
            "unix-socket" => socket(libc::AF_UNIX, libc::SOCK_STREAM, 0),
            "int80-getpid" => int80_getpid(),
            "int80-mount-tmpfs" => {
                need(2)?;
                int80_mount_tmpfs(args[1])
            }
            // Repeat a connect N times; report how each outcome counted.
            "connect-loop" => {
                need(4)?;
                let sa = sockaddr(args[1], args[2])?;
                let n: usize = args[3].parse().map_err(|_| "bad count".to_string())?;
                let mut counts = std::collections::BTreeMap::new();
                for _ in 0..n {
                    *counts.entry(connect(&sa)).or_insert(0usize) += 1;
                }
                counts.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
            }
            // Connect once to each port LO..=HI of ADDR (distinct destinations); count outcomes.
            "connect-range" => {
                need(4)?;
                let lo: u16 = args[2].parse().map_err(|_| "bad port".to_string())?;
                let hi: u16 = args[3].parse().map_err(|_| "bad port".to_string())?;
                let mut counts = std::collections::BTreeMap::new();
                for port in lo..=hi {
                    let sa = sockaddr(args[1], &port.to_string())?;
                    *counts.entry(connect(&sa)).or_insert(0usize) += 1;
                }
                counts.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
            }
            // Make a sub-cgroup and move this process into it (the escape attempt).
            "enter-new-cgroup" => {
                need(2)?;
                match std::fs::create_dir(args[1]) {
                    Ok(()) => write_file(&format!("{}/cgroup.procs", args[1]), &std::process::id().to_string()),
                    Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
                }
            }
            // Files (raw syscalls; the path is used as given).
            // open-ioctl: O_ACCMODE == 3, neither read nor write, an fd for ioctl(2) only.
            "open-r" | "open-w" | "open-rw" | "open-ioctl" | "create" | "open-trunc" => {
                need(2)?;
                let flags = match args[0] {
                    "open-r" => libc::O_RDONLY,
                    "open-w" => libc::O_WRONLY,
                    "open-rw" => libc::O_RDWR,
                    "open-ioctl" => libc::O_ACCMODE,
                    "create" => libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    _ => libc::O_WRONLY | libc::O_TRUNC,
                };
                let c = cstr(args[1]);
                let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
                if fd >= 0 {
                    unsafe { libc::close(fd) };
                }
                result(fd as libc::c_long)
            }
            "create-ro" => {
                // O_CREAT without write access: a create that no write-open judges.
                need(2)?;
                let c = cstr(args[1]);
                let fd = unsafe {
                    libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o644)
                };
                if fd >= 0 {
                    unsafe { libc::close(fd) };
                }
                result(fd as libc::c_long)
            }
            "unlink" => {
                need(2)?;
                result(unsafe { libc::unlink(cstr(args[1]).as_ptr()) } as libc::c_long)
            }
            "rmdir" => {
                need(2)?;
                result(unsafe { libc::rmdir(cstr(args[1]).as_ptr()) } as libc::c_long)
            }
            "truncate" => {
                need(2)?;
                result(unsafe { libc::truncate(cstr(args[1]).as_ptr(), 0) } as libc::c_long)
            }
            "chmod" => {
                need(2)?;
                result(unsafe { libc::chmod(cstr(args[1]).as_ptr(), 0o600) } as libc::c_long)
            }
            "chown" => {
                need(2)?;
                result(unsafe { libc::chown(cstr(args[1]).as_ptr(), 0, 0) } as libc::c_long)
            }
            "rename" => {
                need(3)?;
                result(unsafe { libc::rename(cstr(args[1]).as_ptr(), cstr(args[2]).as_ptr()) } as libc::c_long)
            }
            "link" => {
                need(3)?;
                result(unsafe { libc::link(cstr(args[1]).as_ptr(), cstr(args[2]).as_ptr()) } as libc::c_long)
            }
            "symlink" => {
                need(3)?;
                result(unsafe { libc::symlink(cstr(args[1]).as_ptr(), cstr(args[2]).as_ptr()) } as libc::c_long)
            }
            // fork + execve(PATH, [PATH, ARGS...]); `ok` when execve succeeded and the program
            // exited 0, `errno=...` when execve failed, `exit=N` otherwise.
            "exec" => {
                need(2)?;
                exec(&args[1..])
            }
            // Dangerous classes (BPF-LSM denies them before they run).
            "mount-tmpfs" => {
                need(2)?;
                let (src, fs, dst) = (cstr("none"), cstr("tmpfs"), cstr(args[1]));
                result(unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) }
                    as libc::c_long)
            }
            "unshare-user" => result(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) }),
            "bpf-map" => {
                // BPF_MAP_CREATE of a 1-entry array.
                let mut attr = [0u32; 16];
                attr[0] = 2; // BPF_MAP_TYPE_ARRAY
                attr[1] = 4;
                attr[2] = 4;
                attr[3] = 1;
                let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), std::mem::size_of_val(&attr)) };
                if fd >= 0 {
                    unsafe { libc::close(fd as i32) };
                }
                result(fd)
            }
            "ptrace-child" => {
                // PTRACE_ATTACH to a child of ours (root may; Yama's scope 1 allows descendants).
                // The child dies with us (PDEATHSIG) if the attempt is killed.
                let parent = unsafe { libc::getpid() };
                let child = unsafe { libc::fork() };
                if child == 0 {
                    unsafe {
                        // Not holding the reply pipe: a reader waits for our parent's EOF only.
                        libc::close(0);
                        libc::close(1);
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        // The parent may have died (killed) before PDEATHSIG was set.
                        if libc::getppid() != parent {
                            libc::_exit(0);
                        }
                        libc::pause();
                        libc::_exit(0);
                    }
                }
                let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, child, 0, 0) };
                let r = result(rc);
                unsafe {
                    libc::kill(child, libc::SIGKILL);
                    libc::waitpid(child, std::ptr::null_mut(), 0);
                }
                r
            }
            "perf-event" => {
                // A software CPU-clock counter on ourselves: struct perf_event_attr, 128 bytes,
                // type PERF_TYPE_SOFTWARE (1), size, config PERF_COUNT_SW_CPU_CLOCK (0).
                let mut attr = [0u8; 128];
                attr[0..4].copy_from_slice(&1u32.to_ne_bytes());
                attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
                let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) };
                if fd >= 0 {
                    unsafe { libc::close(fd as i32) };
                }
                result(fd)
            }
            "finit-module" => {
                // Not a module: a kernel that reads it answers ENOEXEC; the gate answers first.
                need(2)?;
                let f = std::fs::File::open(args[1]).map_err(|e| format!("open {}: {e}", args[1]))?;
                let params = cstr("");
                result(unsafe {
                    libc::syscall(libc::SYS_finit_module, std::os::fd::AsRawFd::as_raw_fd(&f), params.as_ptr(), 0)
                })
            }
            "add-key-user" => {
                // Into the user keyring, which outlives this process: a side effect a test can look for.
                need(2)?;
                let (t, d) = (cstr("user"), cstr(args[1]));
                result(unsafe {
                    libc::syscall(
                        libc::SYS_add_key,
                        t.as_ptr(),
                        d.as_ptr(),
                        b"x".as_ptr(),
                        1usize,
                        -4i32, /* KEY_SPEC_USER_KEYRING */
                    )
                })
            }
            "create-many" => {
                // create-many DIR N: creates DIR/f0 .. DIR/f<N-1> (distinct paths for learn bounds).
                need(3)?;
                let n: usize = args[2].parse().map_err(|_| format!("bad count {}", args[2]))?;
                for i in 0..n {
                    let p = format!("{}/f{i}", args[1]);
                    std::fs::File::create(&p)
                        .map_err(|e| format!("{p}: {}", errno_name(e.raw_os_error().unwrap_or(0))))?;
                }
                "ok".to_string()
            }
            "io-uring-setup" => {
                // io_uring_setup(1, &params): 120 zeroed bytes of struct io_uring_params.
                let mut params = [0u8; 120];
                let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
                if fd >= 0 {
                    unsafe { libc::close(fd as i32) };
                }
                result(fd)
            }
            "add-key" => {
                let (t, d) = (cstr("user"), cstr("warden-test"));
                result(unsafe {
                    libc::syscall(
                        libc::SYS_add_key,
                        t.as_ptr(),
                        d.as_ptr(),
                        b"x".as_ptr(),
                        1usize,
                        -2i32, /* KEY_SPEC_PROCESS_KEYRING */
                    )
                })
            }
            "set-comm-hex" => {
                // set-comm-hex HEX: prctl(PR_SET_NAME) with these bytes (newline, ESC, bidi
                // overrides: a workload forging what warden logs); hex because lines are the protocol.
                need(2)?;
                let mut name = unhex(args[1])?;
                name.truncate(15);
                name.push(0);
                result(unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } as libc::c_long)
            }
            "pass-unix" => {
                // pass-unix SOCKET RELAY: connects to the unix socket SOCKET (warden's control
                // socket), hands the connected descriptor to whoever listens on RELAY
                // (SCM_RIGHTS) and closes its own copy: the connection's credentials stay ours.
                need(3)?;
                let conn = std::os::unix::net::UnixStream::connect(args[1])
                    .map_err(|e| format!("connect {}: {}", args[1], errno_name(e.raw_os_error().unwrap_or(0))))?;
                let relay = std::os::unix::net::UnixStream::connect(args[2])
                    .map_err(|e| format!("connect {}: {}", args[2], errno_name(e.raw_os_error().unwrap_or(0))))?;
                send_fd(&relay, std::os::fd::AsRawFd::as_raw_fd(&conn))
            }
            "pid" => std::process::id().to_string(),
            other => return Err(format!("unknown action {other}")),
        })
    })();
    r.unwrap_or_else(|e| e)
}

fn unhex(h: &str) -> Result<Vec<u8>, String> {
    h.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .filter(|p| p.len() == 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("bad hex {h}"))
        })
        .collect()
}

/// Sends descriptor `fd` over the unix stream `via` (one byte of data, SCM_RIGHTS).
fn send_fd(via: &std::os::unix::net::UnixStream, fd: i32) -> String {
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut byte = [b'x'];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr() as *mut _, iov_len: 1 };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut _;
        msg.msg_controllen = space;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, fd);
        result(libc::sendmsg(std::os::fd::AsRawFd::as_raw_fd(via), &msg, 0) as libc::c_long)
    }
}

fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

fn exec(argv: &[&str]) -> String {
    let cargs: Vec<std::ffi::CString> = argv.iter().map(|a| cstr(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    let mut fds = [0i32; 2];
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return result(-1);
        }
        let pid = libc::fork();
        if pid == 0 {
            libc::close(fds[0]);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 1);
            }
            libc::execve(ptrs[0], ptrs.as_ptr(), env.as_ptr());
            let e = *libc::__errno_location();
            libc::write(fds[1], &e as *const i32 as *const _, 4);
            libc::_exit(127);
        }
        libc::close(fds[1]);
        let mut e = 0i32;
        let n = libc::read(fds[0], &mut e as *mut i32 as *mut _, 4);
        libc::close(fds[0]);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        if n == 4 {
            return errno_name(e);
        }
        if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
            "ok".into()
        } else if libc::WIFEXITED(st) {
            format!("exit={}", libc::WEXITSTATUS(st))
        } else {
            format!("signal={}", libc::WTERMSIG(st))
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args.is_empty() {
        eprintln!("usage: warden-attempt ACTION [ARGS...] | warden-attempt serve");
        std::process::exit(2);
    }
    if args[0] == "seq" {
        for line in &args[1..] {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            // Print the attempt first: if it gets us killed, the log shows what was tried.
            print!("{line} => ");
            let _ = std::io::stdout().flush();
            println!("{}", run(&words));
        }
        return;
    }
    if args[0] != "serve" {
        let r = run(&args);
        println!("{r}");
        std::process::exit(if r == "ok" { 0 } else { 1 });
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if words[0] == "exit" {
            break;
        }
        let r = run(&words);
        let _ = writeln!(out, "{r}");
        let _ = out.flush();
    }
}
