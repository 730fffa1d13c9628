"""Built-in drivers. Each module is imported only when a connection uses it."""
