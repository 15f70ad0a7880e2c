"""The installed version of drifttools (a module of its own: importing it loads nothing else)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("drifttools")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"
