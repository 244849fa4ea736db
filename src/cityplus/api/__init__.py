"""HTTP API: app factory, dependencies and problem responses."""
