"""`pixelbatch`, the command-line client of the PixelBatch API."""
