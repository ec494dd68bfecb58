"""graylift: graceful, durable releases for microservice fleets on VMs and bare-metal hosts."""

__version__ = "0.1.0"
