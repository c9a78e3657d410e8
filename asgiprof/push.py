"""`asgiprof push OUT`: upload an output directory's `profile.pb.gz` to Grafana Pyroscope
(its Connect push API, `POST /push.v1.PusherService/Push`, JSON) or Parca (`WriteRaw`
through its HTTP gateway, `POST /profiles/writeraw`, JSON).

Both take the pprof bytes base64-encoded in a series with labels: `__name__` (the profile
type), `service_name`, `host`, `asgi_server`, `asgiprof_version`, `run_id`, plus the user's
`--label k=v`. The samples' own labels (http_route, loop_state, ...) are in the profile.

`build_uploads` makes the requests (plain data, printed by `--dry-run`); `send` posts one
with a timeout, retrying connection errors, timeouts, 429 and 5xx with exponential backoff;
any other answer is a refused upload (exit 1). Bad input is a UsageError (exit 2).
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from asgiprof import __version__
from asgiprof.errors import AsgiprofError, UsageError

PPROF_FILE = "profile.pb.gz"
MERGE_FILE = "merge.json"
PROFILE_NAME = "wall"  # the profile type's `__name__`: wall time, idle included
PYROSCOPE_PATH = "/push.v1.PusherService/Push"
PARCA_PATH = "/profiles/writeraw"
# Pyroscope and Parca (like Prometheus) take label names of this form and reject a whole
# upload otherwise; names starting `__` are reserved for the engines.
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class UploadRefusedError(AsgiprofError):
    """The engine answered, and refused the profile (exit 1: not the user's input)."""


@dataclass(frozen=True, slots=True)
class PushOptions:
    pyroscope: str | None = None
    parca: str | None = None
    labels: tuple[str, ...] = ()  # "k=v" as typed
    service_name: str | None = None
    host: str | None = None
    tenant: str | None = None  # Pyroscope's X-Scope-OrgID (multi-tenant mode)
    timeout_s: float = 10.0
    retries: int = 3
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Upload:
    engine: str  # "pyroscope" or "parca"
    url: str
    headers: dict[str, str]
    labels: dict[str, str]  # series labels, for the dry run and the tests
    body: bytes = field(repr=False)

    def describe(self) -> str:
        """What `--dry-run` prints: the request, its labels, the body with the profile's
        bytes elided (they are the file's, base64-encoded)."""
        headers = "".join(f"  {k}: {v}\n" for k, v in sorted(self.headers.items()))
        body = _elide_profile(orjson.loads(self.body))
        shown = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
        return (
            f"{self.engine}: POST {_redact(self.url)} ({len(self.body)} bytes)\n{headers}"
            + "\n".join("  " + line for line in shown.splitlines())
        )


def _elide_profile(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: f"<{len(base64.b64decode(v))} bytes of {PPROF_FILE}, base64>"
            if k == "rawProfile"
            else _elide_profile(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_elide_profile(v) for v in data]
    return data


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _endpoint(base: str, path: str, option: str) -> str:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{option} needs an http(s) URL like http://pyroscope:4040, not {base!r}")
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path, query="", fragment=""))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a JSON object")
    return data


def series_labels(out: Path, options: PushOptions, profile: bytes) -> dict[str, str]:
    summary = _read_json(out / "summary.json")
    target = summary.get("target") if isinstance(summary.get("target"), dict) else {}
    assert isinstance(target, dict)
    merge = out / MERGE_FILE
    # A merged directory has no meta.json of its own: merge.json names its run and app.
    meta = _read_json(merge if merge.exists() else out / "meta.json")
    run_id = str(meta.get("run_id") or "")
    meta_target = meta.get("target") if isinstance(meta.get("target"), dict) else {}
    assert isinstance(meta_target, dict)
    if not run_id:
        sampling = meta.get("sampling") if isinstance(meta.get("sampling"), dict) else {}
        assert isinstance(sampling, dict)
        started = float(sampling.get("started_at") or 0.0)
        pids = target.get("pids") or [0]
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{pids[0]}"
    if not run_id:  # a hand-edited file: the profile's own hash still names the run
        run_id = hashlib.sha256(profile).hexdigest()[:12]
    spec = meta_target.get("app_spec") or ""
    labels = {
        "__name__": PROFILE_NAME,
        "service_name": options.service_name or _service_name(str(spec), out),
        "host": options.host or socket.gethostname(),
        "asgi_server": str(target.get("server") or "unknown"),
        "asgiprof_version": __version__,
        "run_id": run_id,
    }
    for item in options.labels:
        name, sep, value = item.partition("=")
        if not sep or not LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise UsageError(
                f"--label {item!r}: write NAME=VALUE with NAME matching [a-zA-Z_][a-zA-Z0-9_]* "
                "and not starting with __ (Pyroscope and Parca refuse other names)"
            )
        labels[name] = value
    return labels


def _service_name(app_spec: str, out: Path) -> str:
    # "pkg.module:app" -> "pkg.module": the app's import name is what a team calls it.
    module = app_spec.partition(":")[0]
    return module or out.resolve().name


def build_uploads(out: Path, options: PushOptions) -> list[Upload]:
    if options.pyroscope is None and options.parca is None:
        raise UsageError("say where to push: --pyroscope URL and/or --parca URL")
    path = out / PPROF_FILE
    if not out.is_dir():
        raise UsageError(f"{out} is not a directory: give an output directory of run/attach")
    if not path.exists():
        raise UsageError(f"{path} is missing: run `asgiprof report {out}` to write it")
    profile = path.read_bytes()
    if profile[:2] != b"\x1f\x8b":
        raise UsageError(f"{path} is not a gzipped pprof profile: run `asgiprof report {out}`")
    labels = series_labels(out, options, profile)
    raw = base64.b64encode(profile).decode("ascii")
    pairs = [{"name": k, "value": v} for k, v in labels.items()]
    uploads = []
    if options.pyroscope is not None:
        url = _endpoint(options.pyroscope, PYROSCOPE_PATH, "--pyroscope")
        headers = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
        if options.tenant:
            headers["X-Scope-OrgID"] = options.tenant
        body: dict[str, Any] = {
            "series": [{"labels": pairs, "samples": [{"ID": str(uuid.uuid4()), "rawProfile": raw}]}]
        }
        uploads.append(Upload("pyroscope", url, headers, labels, orjson.dumps(body)))
    if options.parca is not None:
        url = _endpoint(options.parca, PARCA_PATH, "--parca")
        body = {
            "series": [{"labels": {"labels": pairs}, "samples": [{"rawProfile": raw}]}],
            # Python frames carry names and lines: no addresses to normalize.
            "normalized": True,
        }
        headers = {"Content-Type": "application/json"}
        uploads.append(Upload("parca", url, headers, labels, orjson.dumps(body)))
    return uploads


def send(
    upload: Upload,
    timeout_s: float,
    retries: int,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """POST `upload`; retry what may pass on a second try, up to `retries` more times,
    waiting 0.5 s, 1 s, 2 s, ... in between."""
    where = f"{upload.engine} at {_redact(upload.url)}"
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(0.5 * 2 ** (attempt - 1))
        try:
            response = httpx.post(
                upload.url, content=upload.body, headers=upload.headers, timeout=timeout_s
            )
        except httpx.TimeoutException:
            problem = f"no answer within {timeout_s:g} s"
            continue
        except httpx.HTTPError as exc:
            problem = f"cannot connect ({exc})"
            continue
        if response.is_success:
            return response
        text = " ".join(response.text.split())[:300]
        problem = f"HTTP {response.status_code}: {text or response.reason_phrase}"
        if response.status_code not in RETRY_STATUS:
            break
    raise UploadRefusedError(f"{where} did not take the profile: {problem}")


def push(out: Path, options: PushOptions, say: Callable[[str], None]) -> None:
    """Upload (or with `dry_run`, describe) `out`'s profile to every engine named; one
    engine refusing does not keep the profile from the others."""
    refused: list[str] = []
    for upload in build_uploads(out, options):
        if options.dry_run:
            say(upload.describe())
            continue
        try:
            response = send(upload, options.timeout_s, options.retries)
        except UploadRefusedError as exc:
            refused.append(exc.message)
            continue
        say(
            f"pushed {out / PPROF_FILE} to {upload.engine} at {_redact(upload.url)} "
            f"(HTTP {response.status_code})"
        )
    if refused:
        raise UploadRefusedError("; ".join(refused))
