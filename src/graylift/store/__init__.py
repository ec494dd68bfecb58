"""Durable state: releases, host step states, the journal, the built-in inventory (SQLite or PostgreSQL)."""

from graylift.store.base import Fence
from graylift.store.records import (
    DeployedVersion,
    Found,
    HostHealth,
    HostRunRecord,
    JournalEntry,
    ReleaseRecord,
)
from graylift.store.repository import Store

__all__ = ["DeployedVersion", "Fence", "Found", "HostHealth", "HostRunRecord", "JournalEntry", "ReleaseRecord",
           "Store"]
