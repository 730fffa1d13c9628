"""infratrace Flask extension."""
