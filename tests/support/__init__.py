"""Support code shared across the test packages (and bench/): no tests, no fixtures."""
