# warden %postun ($1: 0 on erase, 1 on upgrade). Folders the package does not own as
# entries (rpm removes only what it lists).
if [ "$1" -eq 0 ]; then
    rmdir /etc/warden/deny-lists /etc/warden /usr/share/warden/profiles /usr/share/warden/oci-hooks.d /usr/share/warden \
        /usr/share/doc/warden 2>/dev/null || :
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || :; fi
fi
