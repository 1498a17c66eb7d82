"""Service logic: the rules of the product, free of HTTP and of table layouts."""
