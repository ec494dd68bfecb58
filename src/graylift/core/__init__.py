"""The pure core: data, plans, per-host flows, states and policies. No I/O, no sleeps, no clock reads."""
