"""``python haproxy_cli.py drain|ready SOCKET BACKEND SERVER``: the HAProxy steps for Ansible's
``delegate_to: localhost`` tasks (the same ``common.drain`` / ``common.ready`` the other tools use)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from peers import common

if __name__ == "__main__":
    action, sock, backend, server = sys.argv[1:5]
    seconds = {"drain": common.drain, "ready": common.ready}[action](sock, backend, server)
    print(f"{action} {backend}/{server} {seconds:.3f}s")
