"""Networks, built by name from an explicit registry."""
