"""`asgiprof merge OUT1 OUT2 ... --out DIR`: one analysis over runs of the same app on many
hosts, pods or workers.

`merge_profiles` combines the saved Profiles into one: frames and stacks re-interned, every
run's threads kept apart (pids collide across hosts: a pid already taken is renumbered above
Linux's largest, `(k << 22) | pid` for the k-th run, and `Profile.sources` keeps the pid its
host gave it), resources, chunks and problems carried over. Each run's timeline starts at
0 s, so the timeline shows the runs overlaid, not one after another.

`check_same_app` refuses runs of different apps (exit 2): app specs (`module:attr`) and
route tables that were read must agree. DIR gets `merge.json` (the runs it came from) and
every report; `asgiprof report DIR` merges them again from `merge.json`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from asgiprof import store
from asgiprof.errors import CorruptProfileError, UsageError
from asgiprof.model import (
    Chunk,
    GilSamples,
    Interner,
    Profile,
    RequestCounts,
    Resources,
    RunSource,
    SamplingInfo,
    TargetInfo,
    ThreadInfo,
    ThreadTimeline,
)
from asgiprof.store.sources import SOURCES

MERGE_FILE = "merge.json"
MERGE_FORMAT = 1
_PID_BITS = 22  # Linux's pid_max is at most 2**22: pids from here up are never real


def source_names(dirs: list[Path]) -> list[str]:
    """Each run's directory name, made unique (`-2`, `-3`, ...) when two share one."""
    names: list[str] = []
    for d in dirs:
        base = d.resolve().name or "run"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def check_same_app(named: list[tuple[str, Profile]]) -> None:
    """Raise UsageError naming the difference when the runs are not of one app."""
    specs = {name: p.target.app_spec for name, p in named if p.target.app_spec}
    if len(set(specs.values())) > 1:
        shown = ", ".join(f"{n}: {s}" for n, s in specs.items())
        raise UsageError(f"these runs profiled different apps ({shown}): merge runs of one app")
    tables = {
        name: {r.name for r in p.routes.routes} for name, p in named if p.routes.source == "app"
    }
    if tables:
        first_name, first = next(iter(tables.items()))
        for name, routes in tables.items():
            if routes != first:
                only_first = sorted(first - routes)[:3]
                only_this = sorted(routes - first)[:3]
                raise UsageError(
                    f"these runs have different route tables, so they are not one app: "
                    f"{first_name} has {only_first or 'no others'} that {name} lacks, {name} has "
                    f"{only_this or 'no others'}: merge runs of one app (one version of it)"
                )


def merge_profiles(named: list[tuple[str, Path, Profile]]) -> Profile:
    merged = _Merged()
    for k, (name, out, p) in enumerate(named):
        merged.add_run(k, name, out, p)
    profiles = [p for _, _, p in named]
    first = profiles[0]
    sampling = _merged_sampling(profiles, merged.chunks, merged.problems)
    return Profile(
        target=_merged_target(profiles, merged.sources),
        sampling=sampling,
        frames=merged.frames,
        stacks=merged.stacks,
        threads=merged.threads,
        routes=next((p.routes for p in profiles if p.routes.source == "app"), first.routes),
        resources=merged.resources,
        problems=merged.problems,
        sources=merged.sources,
        requests=RequestCounts.combined([p.requests for p in profiles]),
        gil=merged.gil if merged.measured_gil else None,
    )


@dataclass(slots=True)
class _Merged:
    """The runs added so far: frames and stacks re-interned, pids renumbered apart."""

    frames: list[Any] = field(default_factory=list)
    stacks: list[tuple[int, ...]] = field(default_factory=list)
    interner: Interner = field(init=False)
    threads: list[ThreadTimeline] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    chunks: list[Chunk] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: list[RunSource] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)
    gil: GilSamples = field(default_factory=lambda: GilSamples(0, 0.0))
    measured_gil: bool = False

    def __post_init__(self) -> None:
        self.interner = Interner(self.frames, self.stacks)

    def add_run(self, k: int, name: str, out: Path, p: Profile) -> None:
        """The `k`-th run, `name`, saved in `out`."""
        # The run's own target pids first (its main process), then any other sampled ones.
        seen = {t.thread.pid for t in p.threads}
        pids = list(dict.fromkeys([*p.target.pids, *sorted(seen - set(p.target.pids))]))
        pid_map = {pid: pid if pid not in self.taken else (k << _PID_BITS) | pid for pid in pids}
        self.taken.update(pid_map.values())
        frame_map = [self.interner.frame(f) for f in p.frames]
        stack_map = [self.interner.stack(tuple(frame_map[f] for f in s)) for s in p.stacks]
        for tl in p.threads:
            info = ThreadInfo(pid_map[tl.thread.pid], tl.thread.tid, tl.thread.name)
            merged = ThreadTimeline(info, tl.start_s, tl.duration_s)
            merged.stack.extend(stack_map[s] if s >= 0 else s for s in tl.stack)
            merged.samples.extend(tl.samples)
            self.threads.append(merged)
        self._add_resources(p.resources, pid_map)
        if p.gil is not None:
            self.gil.add(p.gil, pid_map, stack_map)
            self.measured_gil = True
        self.chunks.extend(replace(c, file=f"{name}/{c.file}") for c in p.sampling.chunks)
        self.problems.extend(f"{name}: {text}" for text in p.problems)
        self.sources.append(
            RunSource(
                name=name,
                out_dir=str(out.resolve()),
                pids=tuple((pid_map[pid], pid) for pid in pids),
            )
        )

    def _add_resources(self, resources: Resources, pid_map: dict[int, int]) -> None:
        self.resources.points.extend(
            replace(pt, pid=pid_map.get(pt.pid, pt.pid)) for pt in resources.points
        )
        for (pid, tid), series in resources.thread_cpu.items():
            self.resources.thread_cpu[(pid_map.get(pid, pid), tid)] = series
        for (pid, tid), sched in resources.sched.items():
            self.resources.sched[(pid_map.get(pid, pid), tid)] = sched
        for pid, conns in resources.connections.items():
            new = pid_map.get(pid, pid)
            self.resources.connections[new] = replace(conns, pid=new)


def _merged_target(profiles: list[Profile], sources: list[RunSource]) -> TargetInfo:
    """The first run's target, with every run's pids and the app spec any run read."""
    first = profiles[0]
    servers = sorted({p.target.server for p in profiles})
    return TargetInfo(
        pids=tuple(pid for s in sources for pid, _ in s.pids),
        command=first.target.command,
        server=servers[0] if len(servers) == 1 else "mixed",
        cwd=first.target.cwd,
        python=first.target.python,
        app_spec=next((p.target.app_spec for p in profiles if p.target.app_spec), None),
        mode=first.target.mode,
    )


def _merged_sampling(
    profiles: list[Profile], chunks: list[Chunk], problems: list[str]
) -> SamplingInfo:
    """The runs' sampling together (a problem added to `problems` when rates differ)."""
    rates = sorted({p.sampling.rate_hz for p in profiles})
    if len(rates) > 1:
        problems.append(
            f"the runs sampled at different rates ({rates} Hz): times stay exact, "
            "sample counts weigh the faster runs more"
        )
    return SamplingInfo(
        rate_hz=rates[-1],
        started_at=min(p.sampling.started_at for p in profiles),
        duration_s=max(p.sampling.duration_s for p in profiles),
        samples=sum(p.sampling.samples for p in profiles),
        errors=sum(p.sampling.errors for p in profiles),
        chunks=tuple(chunks),
        stopped_by=profiles[0].sampling.stopped_by,
        max_pause=max(p.sampling.max_pause for p in profiles),
    )


def load_runs(dirs: list[Path]) -> list[tuple[str, Path, Profile]]:
    if len(dirs) < 2:
        raise UsageError("merge needs two or more output directories")
    resolved = [d.resolve() for d in dirs]
    if len(set(resolved)) < len(resolved):
        raise UsageError("the same output directory was given twice: each run counts once")
    named = []
    for name, d in zip(source_names(dirs), dirs, strict=True):
        if (d / MERGE_FILE).exists():
            raise UsageError(f"{d} is a merge already: merge the runs it lists instead")
        named.append((name, d, store.load_profile(d)))
    check_same_app([(name, p) for name, _, p in named])
    return named


def write_merge_file(out: Path, named: list[tuple[str, Path, Profile]]) -> None:
    names = [str(d.resolve()) for _, d, _ in named]
    run_id = "merge-" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    first = named[0][2].target
    store.write_json(
        out / MERGE_FILE,
        {
            "format": MERGE_FORMAT,
            "run_id": run_id,
            "target": {"app_spec": first.app_spec, "server": first.server},
            "sources": [{"name": n, "out_dir": str(d.resolve())} for n, d, _ in named],
        },
    )
    # Source lines the runs read (their files may not exist where merge runs).
    lines: dict[str, Any] = {}
    for _, d, _ in named:
        try:
            saved = orjson.loads((d / SOURCES).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(saved, dict):
            for key, text in saved.items():
                if lines.get(key) is None:
                    lines[key] = text
    if lines and not (out / SOURCES).exists():
        store.write_json(out / SOURCES, lines)


def load_merged(out: Path) -> Profile:
    """The merged Profile of a directory `asgiprof merge` wrote, from the runs it lists."""
    try:
        data = orjson.loads((out / MERGE_FILE).read_bytes())
        entries = data["sources"]
        pairs = [(str(e["name"]), Path(str(e["out_dir"]))) for e in entries]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise CorruptProfileError(f"{out / MERGE_FILE} is damaged ({exc})") from None
    named = []
    for name, d in pairs:
        if not d.is_dir():
            raise UsageError(f"{out / MERGE_FILE} lists {d}, which is gone: merge again")
        named.append((name, d, store.load_profile(d)))
    return merge_profiles(named)


def is_merge(out: Path) -> bool:
    return (out / MERGE_FILE).exists()
