"""CityPlus: an open-source "Internet+" city platform."""

__version__ = "0.1.0"
