"""pyinfra 3.x deploy for one batch (bench/vs_peers.py runs pyinfra once per batch): the common steps as
operations, the HAProxy calls as ``python.call`` on the controller. The release spec comes from the JSON
file named by ``PEERS_SPEC``; ``PEERS_DIR`` is this directory (for ``common``)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.environ["PEERS_DIR"]))

import gevent
from peers import common
from pyinfra import host
from pyinfra.operations import python, server

with open(os.environ["PEERS_SPEC"]) as f:
    SPEC = json.load(f)
STEPS = common.step_scripts(SPEC)
SOCK, BACKEND = SPEC["socket"], SPEC["app"]

server.shell(name="stage", commands=[STEPS["stage"]])
python.call(name="drain", function=common.drain, sock=SOCK, backend=BACKEND, server=host.name, sleep=gevent.sleep)
server.shell(name="stop", commands=[STEPS["stop"]])
server.shell(name="switch", commands=[STEPS["switch"]])
server.shell(name="start", commands=[STEPS["start"]])
server.shell(name="health", commands=[STEPS["health"]])
python.call(name="ready", function=common.ready, sock=SOCK, backend=BACKEND, server=host.name, sleep=gevent.sleep)
