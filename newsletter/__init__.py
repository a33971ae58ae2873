"""newsletter: a personal daily email of the new research papers each subscriber wants to read."""

__version__ = "0.1.0"
