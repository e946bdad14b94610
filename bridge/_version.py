"""The version, in one place: read by the build (pyproject's dynamic version) and at run time, cheaply."""

__version__ = "0.1.0"
