"""Load balancers and service registries (the TrafficSwitch port): one module per backend."""
