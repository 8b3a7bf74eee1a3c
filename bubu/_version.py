"""The package version, kept in a tiny module so reading it imports nothing else."""

__version__ = "0.1.0"
