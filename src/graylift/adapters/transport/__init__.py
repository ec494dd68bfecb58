"""Ways to run commands on a host (the Transport and Connector ports): SSH, and the controller itself."""
