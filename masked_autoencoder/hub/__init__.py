"""Checkpoint formats: key tables and config mappings between our layout and published ones."""
