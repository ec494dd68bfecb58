"""Monitoring systems (the Silencer port): one module per backend."""
