"""Data access: the only code that knows table layouts and AWS error codes."""
