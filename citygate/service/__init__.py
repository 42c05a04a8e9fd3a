"""The service layer: readings become cases that people work, and every step reaches the
city's own systems as signed CloudEvents (docs/SERVICE.md)."""
