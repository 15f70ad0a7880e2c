"""Baseline: the image as it should look, verified, merged and cached."""
