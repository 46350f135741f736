"""A second, independent collector for Microsoft cloud security logs."""

__version__ = "0.1.0"
