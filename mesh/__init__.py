"""errmesh package (re-exports filled in as modules land)."""
