"""Clinical use of model outputs: measurements from masks (RECIST-like)."""
