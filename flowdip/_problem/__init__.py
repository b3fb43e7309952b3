"""Private package; see flowdip/__init__.py for the public names."""
