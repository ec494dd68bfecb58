"""CMDBs (the Inventory port): one module per source."""
