"""eclip."""
