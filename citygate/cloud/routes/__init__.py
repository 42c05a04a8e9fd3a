"""Thin routers: HTTP in and out; the work is in the modules beside this package."""
