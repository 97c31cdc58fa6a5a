"""The package version (one place; the package and its result tables read it)."""
__version__ = "0.1.0"
