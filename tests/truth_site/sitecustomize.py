"""Truth for the servers tests profile: every `time.sleep` called from a line marked
`# planted:` is timed by the server process itself.

Tests put this folder first on PYTHONPATH and set ASGIPROF_TRUTH=FILE for the server (see
tests/planted_truth.py); Python imports `sitecustomize` at start-up, in every process of
the server (workers, reload children), under any CPython the tests use (3.9+, stdlib only).
Each planted call appends `FILE LINE START END` (unix seconds) to FILE with one O_APPEND
write, so processes may share it. Without ASGIPROF_TRUTH nothing is changed.

`time.sleep` is replaced by a wrapper compiled under the pseudo-file `<asgiprof-truth>`:
asgiprof reads it as standard library, so the deepest user frame, and so the culprit, is
still the planted line.
"""

import os

_SOURCE = """
def install(time, sys, linecache, os, path):
    real_sleep = time.sleep
    marked = {}

    def sleep(seconds):
        frame = sys._getframe(1)
        key = (frame.f_code.co_filename, frame.f_lineno)
        hit = marked.get(key)
        if hit is None:
            hit = marked[key] = "# planted:" in linecache.getline(key[0], key[1])
        if not hit:
            return real_sleep(seconds)
        start = time.time()
        try:
            return real_sleep(seconds)
        finally:
            end = time.time()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, ("%s %d %.6f %.6f\\n" % (key[0], key[1], start, end)).encode())
            finally:
                os.close(fd)

    time.sleep = sleep
"""

if os.environ.get("ASGIPROF_TRUTH"):
    import linecache
    import sys
    import time

    _namespace: dict = {}  # type: ignore[type-arg]
    exec(compile(_SOURCE, "<asgiprof-truth>", "exec"), _namespace)
    _namespace["install"](time, sys, linecache, os, os.environ["ASGIPROF_TRUTH"])
