#!/usr/bin/env bash
# Packaging test (a suite of scripts/test.sh; needs root):
#   - builds the deb and the rpm (packaging/build.sh: cargo-deb, cargo-generate-rpm);
#   - deb: installs it into a fresh Debian bookworm chroot (debootstrap, base cached as a
#     tarball in /var/cache/warden-build), checks the files, `warden --version`, `--help`,
#     `profile validate` of every built-in profile and `warden probe`; checks that an upgrade
#     keeps pinned state and a changed conffile, that remove leaves only the conffile and that
#     purge leaves nothing and releases the pinned state;
#   - rpm: `rpm -qlp`, declared dependencies (`rpm -qpR`) checked against the chroot's glibc,
#     install into an rpm root with --nodeps, erase, nothing left;
#   - `systemd-analyze verify` of the unit.
# With CI=true a missing tool fails the test instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
source scripts/lib.sh

fail() { echo "packaging: FAIL: $*" >&2; exit 1; }
ok() { echo "packaging: ok: $*"; }
[ "$(id -u)" = 0 ] || { [ "${CI:-}" = true ] && fail "needs root"; echo "packaging: skipped (needs root)"; exit 0; }

# --- tools ---
apt_ensure debootstrap rpm systemd gzip
export PATH=$HOME/.cargo/bin:$PATH
for t in cargo-deb cargo-generate-rpm; do
    command -v "$t" >/dev/null || cargo install --locked "$t"
done
for t in debootstrap rpm systemd-analyze cargo-deb cargo-generate-rpm; do
    command -v "$t" >/dev/null || fail "$t missing after install"
done

# --- build ---
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
bash packaging/build.sh
deb=$(ls -t "$CARGO_TARGET_DIR"/debian/warden_*.deb | head -1)
rpmf=$(ls -t "$CARGO_TARGET_DIR"/generate-rpm/warden-*.rpm | head -1)
ok "built $(basename "$deb") and $(basename "$rpmf")"

# --- systemd unit ---
# --man=no: the man page is checked inside the package below; the unit names man:warden(1).
# systemd-analyze also checks that ExecStart's binary exists: give it the built one.
unitdir=$(mktemp -d)
sed "s|/usr/bin/warden|$CARGO_TARGET_DIR/release/warden|" packaging/warden.service >"$unitdir/warden.service"
out=$(systemd-analyze verify --man=no "$unitdir/warden.service" 2>&1) || { echo "$out"; fail "systemd-analyze verify"; }
# verify exits 0 on some warnings (unknown keys, bad values): treat any line about our unit as
# an error, except containerd.service missing on this machine.
if echo "$out" | grep -v 'containerd.service' | grep -q 'warden.service'; then echo "$out"; fail "systemd-analyze verify warnings"; fi
rm -rf "$unitdir"
ok "systemd-analyze verify warden.service"

# --- the unit's capabilities are enough ---
# Confine a scratch cgroup to a profile using the syscall and network layers, as root limited
# to the unit's CapabilityBoundingSet (and again without CAP_SYS_ADMIN, which the unit file says
# these layers do not need), with a scratch pin folder on the host's bpffs.
caps=$(sed -n 's/^CapabilityBoundingSet=//p' packaging/warden.service)
cg=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
bpffs_ok=$(awk '$2 == "/sys/fs/bpf" && $3 == "bpf" { print "yes" }' /proc/self/mounts)
if [ -z "$cg" ] || [ -z "$bpffs_ok" ] || ! command -v setpriv >/dev/null; then
    [ "${CI:-}" = true ] && fail "capability check needs cgroup2, bpffs at /sys/fs/bpf and setpriv"
    echo "packaging: capability check skipped (no cgroup2, bpffs or setpriv)"
else
    scratch_cg=$cg/warden-pkgtest-$$
    scratch_pin=/sys/fs/bpf/warden-pkgtest-$$
    cap_cleanup() { WARDEN_PIN_DIR=$scratch_pin "$CARGO_TARGET_DIR/release/warden" reset >/dev/null 2>&1 || true; rmdir "$scratch_cg" 2>/dev/null || true; }
    trap cap_cleanup EXIT
    mkdir -p "$scratch_cg"
    for set in "$caps" "${caps/CAP_SYS_ADMIN/}"; do
        bset=-all$(for c in $set; do c=${c#CAP_}; printf ',+%s' "${c,,}"; done)
        WARDEN_PIN_DIR=$scratch_pin setpriv --bounding-set="$bset" --no-new-privs \
            "$CARGO_TARGET_DIR/release/warden" confine --cgroup "$scratch_cg" --profile profiles/client-one-address.json >/dev/null 2>&1 ||
            fail "warden confine with only $set (setpriv --bounding-set=$bset)"
        cap_cleanup; mkdir -p "$scratch_cg"
        ok "syscall and network layers load and attach with only: $set"
    done
    cap_cleanup; trap - EXIT
fi

# --- chroot ---
cache=/var/cache/warden-build
base=$cache/bookworm-minbase.tar.gz
mkdir -p "$cache"
if [ ! -s "$base" ]; then
    tmp=$(mktemp -d /var/tmp/warden-debootstrap.XXXXXX)
    debootstrap --variant=minbase bookworm "$tmp" http://deb.debian.org/debian >/dev/null
    rm -rf "$tmp"/var/cache/apt/archives/*.deb
    tar -C "$tmp" -czf "$base.part" . && mv "$base.part" "$base"
    rm -rf "$tmp"
fi

root=$(mktemp -d /var/tmp/warden-pkgtest.XXXXXX)
rpmroot=$(mktemp -d /var/tmp/warden-rpmroot.XXXXXX)
cleanup() {
    # Always unmount, deepest first, even after a failure (-l: a busy mount still goes).
    for r in "$root" "$rpmroot"; do
        for m in $(awk -v r="$r" '$2 ~ "^"r"/" { print $2 }' /proc/self/mounts | sort -r); do
            umount "$m" 2>/dev/null || umount -l "$m" || true
        done
    done
    rm -rf "$root" "$rpmroot"
}
trap cleanup EXIT
tar -C "$root" -xzf "$base"

# /proc and a fresh sysfs; a NEW bpffs instance at /sys/fs/bpf, so the purge test below cannot
# touch the host's pinned state; the host's cgroup2 read-only (for `warden probe`).
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t bpf bpf "$root/sys/fs/bpf"
cg=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
if [ -n "$cg" ]; then
    # Hybrid hosts mount cgroup2 at /sys/fs/cgroup/unified: sysfs has no such folder to mount on.
    [ -d "$root$cg" ] || { mount -t tmpfs -o size=1m tmpfs "$root/sys/fs/cgroup"; mkdir -p "$root$cg"; }
    mount --bind -o ro "$cg" "$root$cg"
fi
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

cp "$deb" "$root/tmp/warden.deb"
# dpkg refuses to configure a package whose Depends the chroot does not satisfy (no apt lists
# here to resolve against, and no download wanted).
in_root dpkg -i /tmp/warden.deb >/dev/null || fail "dpkg -i of the deb"
in_root dpkg-query -W -f='${Status}\n' warden | grep -q 'install ok installed' || fail "warden not installed"

for f in /usr/bin/warden /lib/systemd/system/warden.service /etc/warden/config.toml \
    /usr/share/warden/oci-hooks.d/warden.json /usr/share/man/man1/warden.1.gz \
    /usr/share/bash-completion/completions/warden /usr/share/zsh/vendor-completions/_warden \
    /usr/share/fish/vendor_completions.d/warden.fish; do
    [ -s "$root$f" ] || fail "missing $f"
done
for p in profiles/*.json; do [ -s "$root/usr/share/warden/profiles/$(basename "$p")" ] || fail "missing built-in $p"; done
[ -d "$root/etc/warden/profiles" ] || fail "missing /etc/warden/profiles"
[ -d "$root/etc/warden/deny-lists" ] || fail "missing /etc/warden/deny-lists"
[ -z "$(ls -A "$root/etc/warden/profiles")" ] || fail "/etc/warden/profiles not empty"
in_root cat /var/lib/dpkg/info/warden.conffiles | grep -qx /etc/warden/config.toml || fail "config.toml is not a conffile"
gzip -dc "$root/usr/share/man/man1/warden.1.gz" | grep -q '^\.TH' || fail "man page is not roff"
grep -q 'complete' "$root/usr/share/bash-completion/completions/warden" || fail "bash completion empty"
python3 -m json.tool "$root/usr/share/warden/oci-hooks.d/warden.json" >/dev/null || fail "hooks JSON"
ok "deb files"

ver=$(in_root warden --version) || fail "warden --version"
[ "$ver" = "warden $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" ] || fail "version: $ver"
in_root warden --help | grep -q 'run' || fail "warden --help"
in_root sh -c 'warden profile validate /usr/share/warden/profiles/*.json' >/dev/null || fail "profile validate"
in_root warden probe >"$root/tmp/probe.txt" || fail "warden probe"
grep -q 'bpffs at /sys/fs/bpf: yes' "$root/tmp/probe.txt" || { cat "$root/tmp/probe.txt"; fail "probe does not see bpffs"; }
ok "warden --version ($ver), --help, profile validate, probe"

# Pinned state stands for enforcement (a folder on the chroot's own bpffs is enough for the
# maintainer scripts, which act on the folder). A local edit of the conffile must survive.
mkdir -p "$root/sys/fs/bpf/warden/links"
echo 'fail_open = false  # local edit' >>"$root/etc/warden/config.toml"
in_root dpkg -i /tmp/warden.deb >/dev/null || fail "upgrade (reinstall)"
[ -d "$root/sys/fs/bpf/warden/links" ] || fail "upgrade released pinned state"
grep -q 'local edit' "$root/etc/warden/config.toml" || fail "upgrade replaced the changed conffile"
ok "upgrade keeps pinned state and the changed conffile"

in_root dpkg -r warden >/dev/null || fail "remove"
[ -d "$root/sys/fs/bpf/warden/links" ] || fail "remove released pinned state (only purge may)"
left=$(cd "$root" && find etc usr lib var/lib/dpkg/info -path '*warden*' | grep -v '^var/lib/dpkg/info/warden\.\(postrm\|list\|conffiles\|md5sums\)$' || true)
[ "$left" = $'etc/warden\netc/warden/config.toml' ] || fail "after remove, expected only the conffile, found: $left"
ok "remove leaves only the conffile"

in_root dpkg -P warden >/dev/null || fail "purge"
left=$(cd "$root" && find etc usr lib var/lib/dpkg/info -path '*warden*' || true)
[ -z "$left" ] || fail "after purge: $left"
[ ! -e "$root/sys/fs/bpf/warden" ] || fail "purge did not release pinned state"
if in_root dpkg-query -W -f='${Status}' warden 2>/dev/null | grep -q installed; then fail "dpkg still lists warden"; fi
ok "purge leaves nothing and releases pinned state"

# --- rpm ---
list=$(rpm -qlp "$rpmf" 2>/dev/null)
for f in /usr/bin/warden /usr/lib/systemd/system/warden.service /etc/warden/config.toml \
    /usr/share/warden/oci-hooks.d/warden.json /usr/share/man/man1/warden.1.gz; do
    grep -qx "$f" <<<"$list" || fail "rpm lacks $f"
done
for p in profiles/*.json; do grep -qx "/usr/share/warden/profiles/$(basename "$p")" <<<"$list" || fail "rpm lacks $p"; done
rpm -qp --configfiles "$rpmf" 2>/dev/null | grep -qx /etc/warden/config.toml || fail "rpm: config.toml not %config"
rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpmf" 2>/dev/null | grep -qx '/etc/warden/config.toml cn' || fail "rpm: config.toml not %config(noreplace)"
ok "rpm -qlp"

# Declared dependencies: only the shell (scriptlets), the dynamic loader, the C library and
# libgcc_s, each present in the bookworm base below, and no glibc symbol version newer than
# bookworm's (the oldest distribution we claim to support).
glibc=$(in_root dpkg-query -W -f='${Version}' libc6 | cut -d- -f1)
[ -n "$glibc" ] || fail "no glibc version in the chroot"
reqs=$(rpm -qpR "$rpmf" 2>/dev/null)
while read -r r _; do
    case $r in
    /bin/sh | rtld\(GNU_HASH\) | rpmlib\(*\) | config\(warden\)) ;;
    ld-linux-x86-64.so.2* | ld-linux-aarch64.so.1* | libc.so.6* | libgcc_s.so.1* | libm.so.6*)
        so=${r%%(*}
        [ -n "$(find "$root/usr/lib" "$root/usr/lib64" -maxdepth 2 -name "$so" 2>/dev/null | head -1)" ] || fail "rpm requires $so, absent from bookworm"
        v=$(sed -n 's/.*(GLIBC_\([0-9.]*\)).*/\1/p' <<<"$r")
        [ -z "$v" ] || [ "$(printf '%s\n%s\n' "$v" "$glibc" | sort -V | tail -1)" = "$glibc" ] || fail "rpm requires $r, newer than glibc $glibc"
        ;;
    *) fail "rpm declares an unexpected dependency: $r" ;;
    esac
done <<<"$reqs"
ok "rpm -qpR: $(wc -l <<<"$reqs") requirements, all in bookworm (glibc $glibc)"

# Install into an rpm root: a copy of the bookworm base, so the scriptlets have a shell.
# --nodeps because that root has no rpm database of its libc (checked above instead).
tar -C "$rpmroot" -xzf "$base"
mount -t proc proc "$rpmroot/proc"
mount -t sysfs sysfs "$rpmroot/sys"
mount -t bpf bpf "$rpmroot/sys/fs/bpf"
rpm --root "$rpmroot" --initdb
rpm --root "$rpmroot" -i --nodeps "$rpmf" || fail "rpm -i"
rpm --root "$rpmroot" -V --nodeps warden || fail "rpm -V (files as packaged)"
chroot "$rpmroot" /usr/bin/warden --version >/dev/null || fail "rpm: warden --version"
[ -d "$rpmroot/etc/warden/profiles" ] || fail "rpm: no /etc/warden/profiles"
[ -d "$rpmroot/etc/warden/deny-lists" ] || fail "rpm: no /etc/warden/deny-lists"
mkdir -p "$rpmroot/sys/fs/bpf/warden/links"
rpm --root "$rpmroot" -U --replacepkgs --nodeps "$rpmf" || fail "rpm upgrade"
[ -d "$rpmroot/sys/fs/bpf/warden/links" ] || fail "rpm upgrade released pinned state"
rpm --root "$rpmroot" -e warden || fail "rpm -e"
left=$(cd "$rpmroot" && find etc usr lib -path '*warden*' || true)
[ -z "$left" ] || fail "after rpm -e: $left"
[ ! -e "$rpmroot/sys/fs/bpf/warden" ] || fail "rpm -e did not release pinned state"
ok "rpm install, upgrade, erase"

echo "packaging: all checks passed"
