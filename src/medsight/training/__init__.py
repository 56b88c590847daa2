"""Training: typed configs and trainers; shared helpers live in :mod:`.common`."""
