# warden %preun ($1: 0 on erase, 1 on upgrade). Nothing on upgrade: enforcement stays pinned.
# rpm has no purge, so erase is the end of warden on this machine: stop and disable the
# service, then release the pinned enforcement with `warden reset` (the binary is still here)
# and drop local profiles.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then systemctl stop warden.service || :; fi
    if command -v systemctl >/dev/null 2>&1; then systemctl disable warden.service >/dev/null 2>&1 || :; fi
    /usr/bin/warden reset >/dev/null || :
    rm -rf /etc/warden/profiles
fi
