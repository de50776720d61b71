# warden %post ($1: 1 on install, 2 on upgrade). The service is installed disabled.
# Local profiles, searched before /usr/share/warden/profiles (made here: no empty folders in
# the package); removed on erase.
mkdir -p /etc/warden/profiles
# Node-wide deny lists (deny_lists.dir): watched only if it exists when the daemon starts.
mkdir -p /etc/warden/deny-lists
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    # Upgrade: a running daemon moves to the new binary; enforcement stays pinned meanwhile.
    if [ "$1" -gt 1 ]; then systemctl try-restart warden.service || :; fi
fi
