"""Analysis: the pure diff against the baseline, then classification."""
