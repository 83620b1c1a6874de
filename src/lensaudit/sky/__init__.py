"""A synthetic DR10-like sky in the exact real formats (demo and tests), and the cutout service serving it."""
