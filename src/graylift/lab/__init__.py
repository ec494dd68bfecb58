"""The local lab: a real fleet on this machine (network namespaces, sshd hosts, real servers)."""

from graylift.lab.info import LabApp, LabHost, LabInfo
from graylift.lab.lifecycle import host_exec, lab_down, lab_up, partition

__all__ = ["LabApp", "LabHost", "LabInfo", "host_exec", "lab_down", "lab_up", "partition"]
