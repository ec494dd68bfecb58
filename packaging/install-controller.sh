#!/usr/bin/env bash
# Install graylift from a wheel on a plain Debian/Ubuntu controller (as root), with its systemd units:
#   sudo ./install-controller.sh graylift-0.1.0-py3-none-any.whl
# A venv in /opt/graylift, the user `graylift`, /etc/graylift (config) and /var/lib/graylift (state, 0700).
set -euo pipefail
wheel=${1:?usage: install-controller.sh graylift-VERSION-py3-none-any.whl}
here=$(cd "$(dirname "$0")" && pwd)
apt-get install -y -qq --no-install-recommends python3-venv openssh-client >/dev/null
id graylift >/dev/null 2>&1 || useradd --system --home-dir /var/lib/graylift --shell /usr/sbin/nologin graylift
install -d -o graylift -g graylift -m 0700 /var/lib/graylift /var/lib/graylift/logs
install -d -o root -g graylift -m 0750 /etc/graylift
[ -x /opt/graylift/bin/python ] || python3 -m venv /opt/graylift
/opt/graylift/bin/pip install -q --upgrade pip
/opt/graylift/bin/pip install -q "$wheel[postgres]"
ln -sf /opt/graylift/bin/graylift /usr/local/bin/graylift
if [ ! -e /etc/graylift/graylift.yaml ]; then
  /opt/graylift/bin/graylift init /etc/graylift/graylift.yaml
  sed -i 's|^# state: "sqlite:////var/lib/graylift/state.db"|state: "sqlite:////var/lib/graylift/state.db"|' \
    /etc/graylift/graylift.yaml
  chgrp graylift /etc/graylift/graylift.yaml && chmod 0640 /etc/graylift/graylift.yaml
fi
install -m 0644 "$here/systemd/graylift-serve.service" "$here/systemd/graylift-worker@.service" /etc/systemd/system/
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "installed: edit /etc/graylift/graylift.yaml, then:"
echo "  sudo -u graylift graylift users add admin --role admin"
echo "  systemctl enable --now graylift-serve"
