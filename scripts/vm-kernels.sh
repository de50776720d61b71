#!/usr/bin/env bash
# Fetch the Debian kernels the VM tests boot, WITHOUT installing them on the host and without
# adding foreign suites to the system's apt sources. Idempotent: a second run only checks the
# cache and takes well under a second.
#
#   scripts/vm-kernels.sh [bookworm|sid ...]      (default: both)
#
# Environment:
#   WARDEN_CACHE        cache root (default /var/cache/warden-build); kernels land in
#                       $WARDEN_CACHE/vm/<name>/{boot,lib/modules,...} (dpkg-deb -x of the package)
#   WARDEN_VM_REFRESH=1 re-resolve the metapackage (apt lists) even if a kernel is cached, and
#                       switch to a newer kernel package if there is one
#
# Kernels:
#   bookworm  `linux-image-cloud-amd64` from the system's own (bookworm) apt sources -> 6.1.x
#   sid       `linux-image-cloud-amd64` from Debian sid through a PRIVATE sources list, lists dir
#             and apt cache under $WARDEN_CACHE/vm/apt-sid (apt-get -o Dir::Etc::sourcelist=...),
#             so the system's apt state never sees sid                          -> 7.x
#
# Each cached kernel dir holds a `.warden-kernel` stamp with the package name, version and
# kernel release; tests/vm/run reads it. Also ensures qemu-system-x86, busybox-static, cpio
# and kmod (depmod/modprobe, used to resolve module dependencies) are installed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { printf '[vm-kernels] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

CACHE="${WARDEN_CACHE:-/var/cache/warden-build}/vm"
META=linux-image-cloud-amd64
SID_SOURCES='deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main'

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, cache in /var/cache)"

host_packages() {
    # qemu-system-common carries /usr/lib/qemu/virtiofsd (the C one the runner uses).
    apt_ensure qemu-system-x86 qemu-system-common busybox-static cpio kmod
}

# apt options that make apt-get use a private sources list, lists dir and package cache.
sid_apt_opts() {
    local d="$CACHE/apt-sid"
    printf '%s\n' -o "Dir::Etc::sourcelist=$d/sources.list" -o "Dir::Etc::sourceparts=-" \
        -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" \
        -o "Acquire::Languages=none" -o "APT::Get::List-Cleanup=0"
}

sid_update() {
    local d="$CACHE/apt-sid"
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    printf '%s\n' "$SID_SOURCES" > "$d/sources.list"
    local opts; mapfile -t opts < <(sid_apt_opts)
    log "apt-get update (private sid list in $d)"
    apt-get "${opts[@]}" update -qq >/dev/null
}

# Resolve the metapackage to the real image package name and its candidate version:
# prints "PACKAGE VERSION".
resolve() {
    local name=$1; shift
    local dep ver
    dep=$(apt-cache "$@" depends "$META" 2>/dev/null \
          | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
    [ -n "$dep" ] || return 1
    ver=$(apt-cache "$@" policy "$dep" 2>/dev/null | sed -n 's/^ *Candidate: //p')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
    echo "$dep $ver"
}

fetch() {
    local name=$1 dir="$CACHE/$1" stamp="$CACHE/$1/.warden-kernel"
    if [ -f "$stamp" ] && [ "${WARDEN_VM_REFRESH:-0}" != 1 ]; then
        return 0   # cached; fast path
    fi
    local opts=() r pkg ver
    if [ "$name" = sid ]; then
        mapfile -t opts < <(sid_apt_opts)
        if [ "${WARDEN_VM_REFRESH:-0}" = 1 ] || ! resolve sid "${opts[@]}" >/dev/null; then
            sid_update
        fi
    fi
    if ! r=$(resolve "$name" "${opts[@]}"); then
        [ "$name" = bookworm ] || die "cannot resolve $META in $name"
        log "apt-get update (system sources, to find $META)"
        apt-get update -qq
        r=$(resolve "$name") || die "cannot resolve $META in bookworm"
    fi
    read -r pkg ver <<<"$r"
    if [ -f "$stamp" ] && grep -qx "package=$pkg" "$stamp" && grep -qx "version=$ver" "$stamp"; then
        log "$name: $pkg $ver is current"
        return 0
    fi
    log "$name: downloading $pkg $ver"
    local tmp; tmp=$(mktemp -d "$CACHE/.dl-$name.XXXXXX")
    TMPS+=("$tmp")
    # Newer kernels split the image package into linux-binary-ABI (vmlinuz), linux-modules-ABI
    # and linux-base-ABI: take every dependency that carries the same ABI-flavour suffix.
    local abi="${pkg#linux-image-}" pkgs=("$pkg=$ver") d
    for d in $(apt-cache "${opts[@]}" depends "$pkg" 2>/dev/null \
               | sed -n 's/^ *|\{0,1\}Depends: \(linux-[a-z]*-[^ ]*\).*/\1/p' | sort -u); do
        [ "$d" != "$pkg" ] && [ "${d%-"$abi"}" != "$d" ] && pkgs+=("$d=$ver")
    done
    (cd "$tmp" && apt-get "${opts[@]}" -o APT::Sandbox::User=root download -qq "${pkgs[@]}" >/dev/null)
    mkdir "$tmp/root"
    local deb n=0
    for deb in "$tmp"/*.deb; do
        [ -f "$deb" ] || continue
        dpkg-deb -x "$deb" "$tmp/root"; n=$((n + 1))
    done
    [ "$n" -gt 0 ] || die "download of ${pkgs[*]} failed"
    rm -f "$tmp"/*.deb
    # Module tree: /lib/modules (bookworm) or /usr/lib/modules (merged-usr packages).
    local moddir
    for moddir in "$tmp/root/lib/modules" "$tmp/root/usr/lib/modules"; do
        [ -d "$moddir" ] && break
    done
    [ -d "$moddir" ] || die "$pkg has no modules directory"
    local kver; kver=$(ls "$moddir" | head -n1)
    # The kernel image: /boot/vmlinuz-KVER (bookworm) or MODULES/KVER/vmlinuz (newer layout).
    local vmlinuz
    for vmlinuz in "boot/vmlinuz-$kver" "lib/modules/$kver/vmlinuz" "usr/lib/modules/$kver/vmlinuz" ""; do
        [ -n "$vmlinuz" ] && [ -f "$tmp/root/$vmlinuz" ] && break
    done
    [ -n "$vmlinuz" ] || die "no vmlinuz for $kver in ${pkgs[*]}"
    # depmod needs BASE/lib/modules; give merged-usr trees that path too.
    [ -e "$tmp/root/lib" ] || ln -s usr/lib "$tmp/root/lib"
    # Debian generates modules.dep in postinst; do it here, against the unpacked tree only.
    depmod -b "$tmp/root" "$kver"
    printf 'package=%s\npackages=%s\nversion=%s\nkernel=%s\nvmlinuz=%s\nmodules=lib/modules/%s\n' \
        "$pkg" "${pkgs[*]}" "$ver" "$kver" "$vmlinuz" "$kver" > "$tmp/root/.warden-kernel"
    rm -rf "$dir.old"
    [ -e "$dir" ] && mv "$dir" "$dir.old"
    mv "$tmp/root" "$dir"
    rm -rf "$dir.old"
    log "$name: $kver ready in $dir"
}

TMPS=()
trap 'rm -rf "${TMPS[@]}"' EXIT

main() {
    local names=("$@")
    [ "${#names[@]}" -gt 0 ] || names=(bookworm sid)
    for n in "${names[@]}"; do
        case "$n" in bookworm|sid) ;; *) die "unknown kernel '$n' (bookworm|sid)";; esac
    done
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    host_packages
    for n in "${names[@]}"; do fetch "$n"; done
}

main "$@"
