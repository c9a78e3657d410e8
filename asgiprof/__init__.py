"""asgiprof: find the lines that block an ASGI server's event loop, per route."""

__version__ = "0.1.0"
