"""Shared helpers: checkpoints, run directories, devices, seeding."""
