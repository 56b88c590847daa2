"""The web viewer: HTML pages (login, worklist, study) and slice rendering."""
