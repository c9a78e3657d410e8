"""Analysis steps, run in a visible order by `analyze()`; see result.py for the output."""
