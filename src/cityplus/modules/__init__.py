"""Domain modules; each registers itself through the `cityplus.modules` entry-point group."""
