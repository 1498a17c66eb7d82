"""HTTP edge: the resolver every API Lambda uses, the one error mapping, the reply shapes."""
