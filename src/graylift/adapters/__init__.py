"""Backends behind graylift.ports: one module per system."""
