"""placeholder; replaced by the objectives helper."""
