#!/usr/bin/env bash
# Idempotent installer for the private containerd the NRI tests and the demo use.
#
#   - containerd 2.x from Debian sid the same way, into $WARDEN_CACHE/containerd2 (issue 20).
#   - containerd 1.7.x (NRI v1alpha1) from Debian trixie, fetched WITHOUT adding trixie to the
#     system's apt sources: a private sources file and private lists/cache folders, then
#     `apt-get download` and `dpkg-deb -x` into $WARDEN_CACHE/containerd.
#   - crun from trixie the same way, with its own trixie libraries, into $WARDEN_CACHE/crun.
#   - bookworm's runc and busybox-static from the system sources (apt).
#   - two local OCI image-layout tarballs (there is no registry here):
#       $WARDEN_CACHE/images/busybox.tar  docker.io/warden/busybox:local (busybox-static + applets)
#       $WARDEN_CACHE/images/pause.tar    docker.io/warden/pause:local   (tiny static Rust pause)
#
# Prints nothing on stdout except, with --print-env, shell assignments of where things are:
#   WARDEN_CONTAINERD_BIN=...  WARDEN_BUSYBOX_IMAGE_TAR=... (the integration tests read these)
# A second run only checks stamps and takes well under a second.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { printf '[containerd.sh] %s\n' "$*" >&2; }

CACHE="${WARDEN_CACHE:-/var/cache/warden-build}"
SUITE="${WARDEN_CONTAINERD_SUITE:-trixie}"
MIRROR="${WARDEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CTRD_DIR="${CACHE}/containerd"
SUITE2="${WARDEN_CONTAINERD2_SUITE:-sid}"
CTRD2_DIR="${CACHE}/containerd2"
CRUN_DIR="${CACHE}/crun"
IMG_DIR="${CACHE}/images"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${HERE}/.." && pwd)"
PAUSE_SRC="${REPO}/tests/integration/pause/pause.rs"
BUSYBOX_REF="docker.io/warden/busybox:local"
PAUSE_REF="docker.io/warden/pause:local"

if [ "$(id -u)" != 0 ]; then log "must run as root (apt, containerd)"; exit 1; fi

apt_system_packages() {
    apt_ensure runc busybox-static
}

# apt_private SUITE PKG...: downloads PKG's .deb files from Debian SUITE into
# $CACHE/apt-SUITE/dl (cleared first) through private lists: every option that could touch the
# system's apt state points into that folder, nothing is installed.
apt_private() {
    local SUITE="$1"; shift
    local apt_dir="${CACHE}/apt-${SUITE}"
    mkdir -p "${apt_dir}/lists/partial" "${apt_dir}/cache/archives/partial" "${apt_dir}/dl"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$MIRROR" "$SUITE" > "${apt_dir}/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=${apt_dir}/sources.list" -o "Dir::Etc::sourceparts=-"
                -o "Dir::State::Lists=${apt_dir}/lists" -o "Dir::Cache=${apt_dir}/cache"
                -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1"
                -o "APT::Sandbox::User=root")
    log "apt-get update (private ${SUITE} lists in ${apt_dir})"
    apt-get "${opts[@]}" update -qq >&2
    log "apt-get download $* (${SUITE})"
    rm -f "${apt_dir}"/dl/*.deb
    (cd "${apt_dir}/dl" && apt-get "${opts[@]}" download "$@" >&2)
}

# containerd_private SUITE DIR: containerd from Debian SUITE, unpacked into DIR.
containerd_private() {
    local SUITE="$1" CTRD_DIR="$2"
    local stamp="${CTRD_DIR}/.warden-${SUITE}"
    if [ -f "$stamp" ] && [ -x "${CTRD_DIR}/usr/bin/containerd" ]; then return 0; fi
    apt_private "$SUITE" containerd
    local deb
    deb=$(ls "${CACHE}/apt-${SUITE}"/dl/containerd_*.deb | head -n1)
    [ -n "$deb" ] || { log "containerd .deb not downloaded"; exit 1; }
    rm -rf "${CTRD_DIR}.new"; mkdir -p "${CTRD_DIR}.new"
    dpkg-deb -x "$deb" "${CTRD_DIR}.new"
    "${CTRD_DIR}.new/usr/bin/containerd" --version >&2
    rm -rf "${CTRD_DIR}"; mv "${CTRD_DIR}.new" "${CTRD_DIR}"
    basename "$deb" > "$stamp"
}

# crun_private SUITE DIR: crun from Debian SUITE (trixie: 1.21) for the crun run of the
# containerd suite (issue 20). Bookworm's crun 1.8.1 cannot serve containerd 1.7/2.x at all: it
# refuses their config.json ("unknown version specified": it accepted ociVersion 1.0.x only,
# a check crun dropped in 1.14.3). Trixie's binary needs glibc 2.38 and bookworm has 2.36, so
# it runs unchanged on its own trixie libraries: libc6 and its four library dependencies are
# unpacked beside it and the binary's ELF interpreter and DT_RPATH (not RUNPATH: RPATH also
# applies to the libraries' own dependencies) point there (patchelf). The
# code is trixie's crun as a trixie node runs it; only where it finds its libraries differs.
crun_private() {
    local SUITE="$1" DIR="$2"
    local stamp="${DIR}/.warden-${SUITE}"
    if [ -f "$stamp" ] && [ -x "${DIR}/usr/bin/crun" ]; then return 0; fi
    apt_ensure patchelf
    apt_private "$SUITE" crun libc6 libcap2 libseccomp2 libsystemd0 libyajl2
    rm -rf "${DIR}.new"; mkdir -p "${DIR}.new"
    local deb
    for deb in "${CACHE}/apt-${SUITE}"/dl/*.deb; do dpkg-deb -x "$deb" "${DIR}.new"; done
    # Paths are final ones: the folder is renamed into place below.
    local interp libs
    interp=$(cd "${DIR}.new" && find . -name 'ld-linux-x86-64.so.2' -type f | head -n1)
    [ -n "$interp" ] || { log "no ld-linux-x86-64.so.2 in ${SUITE}'s libc6"; exit 1; }
    libs="${DIR}/usr/lib/x86_64-linux-gnu:${DIR}/lib/x86_64-linux-gnu"
    patchelf --set-interpreter "${DIR}/${interp#./}" --force-rpath --set-rpath "$libs" "${DIR}.new/usr/bin/crun"
    rm -rf "${DIR}"; mv "${DIR}.new" "${DIR}"
    "${DIR}/usr/bin/crun" --version >&2
    ls "${CACHE}/apt-${SUITE}"/dl/crun_*.deb | xargs -n1 basename > "$stamp"
}

# sha256 of a file, hex only.
sha() { sha256sum "$1" | cut -d' ' -f1; }

# build_image REF OUT_TAR ROOTFS_DIR CMD_JSON: a single-layer OCI image-layout tarball.
build_image() {
    local ref="$1" out="$2" rootfs="$3" cmd="$4"
    local work; work=$(mktemp -d "${IMG_DIR}/build.XXXXXX")
    mkdir -p "${work}/oci/blobs/sha256"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "${work}/layer.tar" .
    local layer_sha layer_size
    layer_sha=$(sha "${work}/layer.tar"); layer_size=$(stat -c %s "${work}/layer.tar")
    mv "${work}/layer.tar" "${work}/oci/blobs/sha256/${layer_sha}"
    cat > "${work}/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],"Cmd":${cmd},"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:${layer_sha}"]},"history":[{"created_by":"warden scripts/containerd.sh"}]}
EOF
    local cfg_sha cfg_size
    cfg_sha=$(sha "${work}/config.json"); cfg_size=$(stat -c %s "${work}/config.json")
    mv "${work}/config.json" "${work}/oci/blobs/sha256/${cfg_sha}"
    cat > "${work}/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:${cfg_sha}","size":${cfg_size}},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:${layer_sha}","size":${layer_size}}]}
EOF
    local man_sha man_size
    man_sha=$(sha "${work}/manifest.json"); man_size=$(stat -c %s "${work}/manifest.json")
    mv "${work}/manifest.json" "${work}/oci/blobs/sha256/${man_sha}"
    printf '{"imageLayoutVersion":"1.0.0"}' > "${work}/oci/oci-layout"
    cat > "${work}/oci/index.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:${man_sha}","size":${man_size},"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"${ref}","org.opencontainers.image.ref.name":"local"}}]}
EOF
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "${work}/oci" -cf "${out}.new" .
    mv "${out}.new" "$out"
    rm -rf "$work"
}

rootfs_skeleton() {
    local root="$1"
    mkdir -p "${root}"/{bin,etc,proc,sys,dev,tmp,root,var,run}
    chmod 1777 "${root}/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "${root}/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "${root}/etc/group"
}

busybox_image() {
    local out="${IMG_DIR}/busybox.tar"
    local key; key="$(dpkg-query -W -f='${Version}' busybox-static)-v1"
    if [ -f "$out" ] && [ "$(cat "${out}.stamp" 2>/dev/null)" = "$key" ]; then return 0; fi
    log "building ${BUSYBOX_REF} from busybox-static ${key}"
    local root; root=$(mktemp -d "${IMG_DIR}/rootfs.XXXXXX")
    rootfs_skeleton "$root"
    cp /bin/busybox "${root}/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "${root}/bin/${applet}"
    done
    build_image "$BUSYBOX_REF" "$out" "$root" '["/bin/sh"]'
    rm -rf "$root"
    echo "$key" > "${out}.stamp"
}

pause_image() {
    local out="${IMG_DIR}/pause.tar"
    local key; key="$(sha "$PAUSE_SRC")-$(rustc -V | tr ' ' _)"
    if [ -f "$out" ] && [ "$(cat "${out}.stamp" 2>/dev/null)" = "$key" ]; then return 0; fi
    log "building ${PAUSE_REF} (static Rust pause from ${PAUSE_SRC})"
    local root; root=$(mktemp -d "${IMG_DIR}/rootfs.XXXXXX")
    rootfs_skeleton "$root"
    rustc --edition 2021 -O -C panic=abort -C target-feature=+crt-static \
        --target x86_64-unknown-linux-gnu -o "${root}/pause" "$PAUSE_SRC"
    strip "${root}/pause" 2>/dev/null || true
    build_image "$PAUSE_REF" "$out" "$root" '["/pause"]'
    rm -rf "$root"
    echo "$key" > "${out}.stamp"
}

mkdir -p "$CACHE" "$IMG_DIR"
apt_system_packages
containerd_private "$SUITE" "$CTRD_DIR"
# containerd 2.x (issue 20): sid's, the same private way; its Go binaries need glibc 2.34,
# which bookworm has. The tests pick it with WARDEN_TEST_CONTAINERD=2.
containerd_private "$SUITE2" "$CTRD2_DIR"
crun_private "$SUITE" "$CRUN_DIR"
busybox_image
pause_image

if [ "${1:-}" = "--print-env" ]; then
    printf 'WARDEN_CONTAINERD_BIN=%s\n' "${CTRD_DIR}/usr/bin"
    printf 'WARDEN_CONTAINERD2_BIN=%s\n' "${CTRD2_DIR}/usr/bin"
    printf 'WARDEN_CRUN=%s\n' "${CRUN_DIR}/usr/bin/crun"
    printf 'WARDEN_BUSYBOX_IMAGE_TAR=%s\nWARDEN_BUSYBOX_IMAGE=%s\n' "${IMG_DIR}/busybox.tar" "$BUSYBOX_REF"
    printf 'WARDEN_PAUSE_IMAGE_TAR=%s\nWARDEN_PAUSE_IMAGE=%s\n' "${IMG_DIR}/pause.tar" "$PAUSE_REF"
fi
log "ready: $(cat "${CTRD_DIR}/.warden-${SUITE}"), $(cat "${CTRD2_DIR}/.warden-${SUITE2}"), $(cat "${CRUN_DIR}/.warden-${SUITE}")"
