"""Image fetching and processing for batch items.

Submodules are imported explicitly (``pixelbatch.imaging.fetch``, ``.pipeline``) so that code
that only checks URLs does not pay for importing Pillow.
"""
