"""Shared infrastructure of CityPlus; knows no domain."""
