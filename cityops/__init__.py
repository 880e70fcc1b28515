"""cityops: the stream processor behind Cilegon's command center."""

__version__ = "0.1.0"
