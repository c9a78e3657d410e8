"""Report benchmark: render a large synthetic analysis and time its first render in Chromium.

    python bench/report_bench.py [--stacks 30000] [--minutes 10] [--keep DIR]

Prints numbers only (no thresholds): analysis size, render time and size of each export,
and, in headless Chromium opened from file://, the time until the page's first flamegraph
draw (`window.__asgiprofRenderMs`, from navigation start) and the cost of a view switch.
Targets (DESIGN): first render < ~2 s, report.html < ~15 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make `asgiprof` and `tests` importable

from asgiprof.reporters import folded, html, speedscope  # noqa: E402
from tests.browser.conftest import Chromium, find_chromium  # noqa: E402
from tests.reporter_fixtures import big_analysis  # noqa: E402

SWITCH_VIEW = """(() => {
  const t = performance.now();
  document.querySelector('#view-buttons button[data-view=%s]').click();
  return performance.now() - t;
})()"""


def timed(label: str, start: float) -> float:
    elapsed = time.perf_counter() - start
    print(f"{label:<34} {elapsed:8.3f} s")
    return elapsed


def browser_numbers(report: Path, runs: int) -> None:
    executable = find_chromium()
    if executable is None:
        print("chromium                           not found (set ASGIPROF_CHROMIUM)")
        return
    for i in range(runs):
        browser = Chromium(executable)
        try:
            browser.call("Browser.getVersion", timeout=30.0)
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(report.resolve().as_uri(), timeout=60.0)
            page.wait_for("window.__asgiprofRendered === true", timeout=60.0)
            wall = time.perf_counter() - start
            first = page.evaluate("window.__asgiprofRenderMs")
            drawn = page.evaluate("window.__asgiprof.state().drawn")
            print(f"run {i + 1}: first render (page clock) {first / 1000:8.3f} s")
            print(f"run {i + 1}: navigate -> rendered (wall) {wall:8.3f} s")
            print(f"run {i + 1}: frames drawn                {drawn:8d}")
            for view in ("all", "threadpool", "blocking", "loop"):
                ms = page.evaluate(SWITCH_VIEW % view)
                print(f"run {i + 1}: switch to {view:<11}      {ms / 1000:8.3f} s")
            errors = page.console_errors
            print(f"run {i + 1}: console errors              {len(errors):8d}")
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=30_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3, help="browser runs")
    parser.add_argument("--keep", type=Path, help="write the outputs here and keep them")
    args = parser.parse_args()

    start = time.perf_counter()
    analysis = big_analysis(n_stacks=args.stacks, minutes=args.minutes)
    timed("build synthetic analysis", start)
    p = analysis.profile
    print(f"{'threads':<34} {len(p.threads):8d}")
    print(f"{'distinct stacks':<34} {len(p.stacks):8d}")
    print(f"{'distinct frames':<34} {len(p.frames):8d}")
    print(f"{'runs':<34} {sum(len(t) for t in p.threads):8d}")
    print(f"{'samples':<34} {p.sampling.samples:8d}")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        payload = html.report_payload(analysis)
        timed("html payload (call tree)", start)
        print(f"{'call tree nodes':<34} {len(payload['nodes']['parent']):8d}")
        for name, reporter in (
            ("report.html", html.REPORTER),
            ("profile.speedscope.json", speedscope.REPORTER),
            ("stacks.folded", folded.REPORTER),
        ):
            start = time.perf_counter()
            path = reporter.render(analysis, out)
            timed(f"render {name}", start)
            print(f"{'size ' + name + ' (MB)':<34} {path.stat().st_size / 1e6:8.2f}")
        browser_numbers(out / "report.html", args.runs)


if __name__ == "__main__":
    main()
