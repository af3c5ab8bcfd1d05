"""The `presence-bridge` operator CLI: the one place that may use every package."""
