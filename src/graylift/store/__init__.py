"""Durable state: releases, host step states, the journal, the built-in inventory (SQLite or PostgreSQL)."""

from graylift.store.repository import (
    DeployedVersion,
    HostRunRecord,
    JournalEntry,
    ReleaseRecord,
    Store,
)

__all__ = ["DeployedVersion", "HostRunRecord", "JournalEntry", "ReleaseRecord", "Store"]
