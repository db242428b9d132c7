"""Trace loaders and workload transforms.

Loaders turn a public trace file into a :class:`~prfaas_gym.request.Workload` (arrivals in
seconds from the first request, sorted stably by arrival, ids renumbered ``0..n-1``):

=============  =====================================================================
format         file
=============  =====================================================================
``mooncake``   JSONL, one object per line: ``timestamp`` (ms), ``input_length``,
               ``output_length``, ``hash_ids`` (512-token blocks), optional ``session_id``
``azure``      Azure LLM inference trace 2023 CSV: ``TIMESTAMP``, ``ContextTokens``,
               ``GeneratedTokens``
``vidur``      Vidur processed CSV: ``arrived_at`` (s), ``num_prefill_tokens``,
               ``num_decode_tokens``
``burstgpt``   BurstGPT CSV: ``Timestamp`` (s), ``Model``, ``Request tokens``,
               ``Response tokens``, ``Total tokens``, ``Log Type``
=============  =====================================================================

Every problem with a file (missing, empty, not UTF-8, wrong header, malformed line) raises
:class:`~prfaas_gym.errors.PrfaasInputError` with ``where = "<path>:<line>"`` (1-based, the CSV
header is line 1) and a message naming the field.

Transforms (:func:`scale_rate`, :func:`to_mean_rate`, :func:`window`, :func:`take`,
:func:`repeat`) never modify their input; they return a new workload with renumbered ids.
:func:`length_stats` summarises a workload.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.request import MAX_TOKENS, Request, Workload, rebased_requests

__all__ = [
    "TRACE_FORMATS",
    "MOONCAKE_BLOCK_SIZE",
    "load_trace",
    "load_mooncake",
    "load_azure",
    "load_vidur",
    "load_burstgpt",
    "read_lengths",
    "infer_format",
    "scale_rate",
    "to_mean_rate",
    "window",
    "take",
    "repeat",
    "length_stats",
]

TRACE_FORMATS: tuple[str, ...] = ("mooncake", "azure", "vidur", "burstgpt")
MOONCAKE_BLOCK_SIZE = 512

_MOONCAKE_REQUIRED = ("timestamp", "input_length", "output_length", "hash_ids")
_MOONCAKE_ALLOWED = frozenset(_MOONCAKE_REQUIRED + ("session_id",))
_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_VIDUR_COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")
_VIDUR_LENGTH_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")
_BURSTGPT_COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens",
                     "Log Type")
_AZURE_TS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")


# --------------------------------------------------------------------------------------------
# file and field helpers

def _read_text(path: str | Path) -> tuple[Path, list[str]]:
    """Read ``path`` as UTF-8 and return it split into lines (without line endings).

    Raises PrfaasInputError for a missing file, a directory, undecodable bytes or a file with
    nothing but whitespace in it.
    """
    p = Path(path)
    if not p.exists():
        raise PrfaasInputError("trace file not found", p)
    if not p.is_file():
        raise PrfaasInputError("trace path is not a regular file", p)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PrfaasInputError(f"not UTF-8 text ({e.reason})", f"{p}:{line}") from None
    if not text.strip():
        raise PrfaasInputError("trace file is empty", p)
    # split on "\n" only: str.splitlines() also breaks on characters allowed inside JSON strings
    return p, [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def _length(value: Any, field: str, where: str) -> int:
    """A token count from JSON or CSV text: an integer in ``[1, MAX_TOKENS]`` (``3.0`` is
    accepted, ``3.5`` not)."""
    v = _integer(value, field, where)
    if v < 1:
        raise PrfaasInputError(f"{field} must be >= 1, got {v}", where)
    if v > MAX_TOKENS:
        raise PrfaasInputError(f"{field} must be <= {MAX_TOKENS:,} tokens, got {v:,}", where)
    return v


def _integer(value: Any, field: str, where: str) -> int:
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise PrfaasInputError(f"{field} must be an integer, got {value!r}",
                                       where) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PrfaasInputError(f"{field} must be an integer, got {value!r}", where)
    if isinstance(value, float):
        if not value.is_integer():
            raise PrfaasInputError(f"{field} must be an integer, got {value!r}", where)
        return int(value)
    return value


def _seconds(value: Any, field: str, where: str) -> float:
    """A finite number (JSON number or CSV text)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PrfaasInputError(f"{field} must be a number, got {value!r}", where) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PrfaasInputError(f"{field} must be a number, got {value!r}", where)
    if not math.isfinite(value):
        raise PrfaasInputError(f"{field} must be finite, got {value!r}", where)
    return float(value)


def _parse_azure_timestamp(text: str, where: str) -> int:
    """``YYYY-MM-DD HH:MM:SS[.fffffff]`` -> integer nanoseconds since 0001-01-01.

    Parsed by hand because the Azure files carry 7 fractional digits and ``strptime``'s ``%f``
    takes at most 6; integer nanoseconds keep the 100 ns resolution exact.
    """
    m = _AZURE_TS.match(text.strip())
    if m is None:
        raise PrfaasInputError("TIMESTAMP must look like 'YYYY-MM-DD HH:MM:SS.fffffff', "
                               f"got {text!r}", where)
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    try:
        day = datetime.date(y, mo, d).toordinal()
    except ValueError as e:
        raise PrfaasInputError(f"TIMESTAMP has an invalid date ({e}): {text!r}", where) from None
    if h > 23 or mi > 59 or s > 60:
        raise PrfaasInputError(f"TIMESTAMP has an invalid time of day: {text!r}", where)
    seconds = ((day * 24 + h) * 60 + mi) * 60 + s
    return seconds * 1_000_000_000 + int(frac.ljust(9, "0"))


def _csv_header(rows: Iterator[list[str]], path: str | Path) -> list[str]:
    """The stripped column names of the first row of ``rows`` (a ``csv.reader``; none: an
    empty header), or a :class:`PrfaasInputError` at ``path:1`` (an unmatched quote
    swallows the whole file)."""
    try:
        return [h.strip() for h in next(rows, [])]
    except csv.Error as e:
        raise PrfaasInputError(f"malformed CSV header ({e}; an unmatched quote?)",
                               f"{path}:1") from None


def _csv_rows(path: Path, lines: list[str], fmt: str, required: tuple[str, ...],
              ) -> tuple[dict[str, int], Iterator[tuple[int, str, list[str]]]]:
    """Check the header of a CSV trace and iterate over its data rows.

    Returns the column index of every header name and an iterator of ``(line, where,
    fields)`` for each non-blank data row, ``line`` being the row's first line; rows with the
    wrong number of fields raise. Extra columns are allowed and ignored; a missing required
    column raises, naming the expected columns. A row whose quoted field spans several lines
    (an unmatched quote swallows the lines after it) is reported at the line it starts on.
    """
    reader = csv.reader(io.StringIO("\n".join(lines), newline=""))
    header = _csv_header(reader, path)
    missing = [c for c in required if c not in header]
    if missing:
        if header and header[0].startswith("{"):
            raise PrfaasInputError(f"expected a CSV trace ({fmt} format), but the first line is "
                                   "a JSON object (a Mooncake trace? its format is mooncake)",
                                   f"{path}:1")
        raise PrfaasInputError(
            f"wrong CSV header for the {fmt} format: expected columns {', '.join(required)}; "
            f"got {', '.join(header) or '(empty line)'} (missing {', '.join(missing)})",
            f"{path}:1")
    index = {name: i for i, name in reversed(list(enumerate(header)))}

    def rows() -> Iterator[tuple[int, str, list[str]]]:
        start = reader.line_num + 1
        try:
            for fields in reader:
                line, end, start = start, reader.line_num, reader.line_num + 1
                if not fields or all(not f.strip() for f in fields):
                    continue
                where = f"{path}:{line}"
                if len(fields) != len(header):
                    spans = (f"; its quoted field runs from line {line} to line {end} (an "
                             "unmatched quote?)" if end > line else "")
                    raise PrfaasInputError(
                        f"expected {len(header)} fields ({', '.join(header)}), got "
                        f"{len(fields)}{spans}", where)
                yield line, where, fields
        except csv.Error as e:
            raise PrfaasInputError(f"malformed CSV ({e})", f"{path}:{start}") from None

    return index, rows()


#: The longest a trace may span: a double's spacing at 1e8 s is 15 ns.
MAX_TRACE_SPAN_S = 1e8


def _field(fields: list[str], index: dict[str, int], name: str, where: str) -> str:
    text = fields[index[name]].strip()
    if not text:
        raise PrfaasInputError(f"{name} is empty", where)
    return text


def _workload(arrivals: list[float], prompts: list[int], outputs: list[int],
              hashes: list[tuple[int, ...]] | None, sessions: list[int | None] | None,
              name: str, block_size: int, source: str, path: Path,
              linenos: list[int]) -> Workload:
    """Requests relative to the earliest arrival, sorted stably by arrival. ``linenos`` are
    the file lines of the arrivals, for the error on a trace longer than
    :data:`MAX_TRACE_SPAN_S`."""
    first = min(range(len(arrivals)), key=arrivals.__getitem__)
    last = max(range(len(arrivals)), key=arrivals.__getitem__)
    t0 = arrivals[first]
    span = arrivals[last] - t0
    if span > MAX_TRACE_SPAN_S:
        raise PrfaasInputError(
            f"line {linenos[last]} arrives {span:.3g} s after line {linenos[first]}; a trace may "
            f"span at most {MAX_TRACE_SPAN_S:.0e} s (about 3 years), beyond which the "
            "simulator's clock loses its resolution (a timestamp in the wrong unit, or a "
            "corrupt line?)", str(path))
    reqs = [
        Request(i, arrivals[i] - t0, prompts[i], outputs[i],
                hashes[i] if hashes is not None else (), block_size,
                sessions[i] if sessions is not None else None)
        for i in range(len(arrivals))
    ]
    return Workload.from_requests(reqs, name=name, block_size=block_size, source=source)


# --------------------------------------------------------------------------------------------
# loaders

class _DuplicateKeyError(ValueError):
    """A JSON object that names one field twice (``args[0]``)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` object hook: the object, or _DuplicateKeyError for a repeated field."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


def load_mooncake(path: str | Path, block_size: int = MOONCAKE_BLOCK_SIZE) -> Workload:
    """Load a Mooncake JSONL trace.

    Each non-blank line is an object with exactly the fields ``timestamp`` (ms, any finite
    number), ``input_length`` and ``output_length`` (integers >= 1), ``hash_ids`` (a list of
    integers >= 0, at most ``ceil(input_length / block_size)`` of them) and optionally
    ``session_id`` (integer or null), each at most once. Arrival = ``(timestamp - min
    timestamp) / 1000`` s; lines need not be sorted.
    """
    p, lines = _read_text(path)
    arrivals: list[float] = []
    linenos: list[int] = []
    prompts: list[int] = []
    outputs: list[int] = []
    hashes: list[tuple[int, ...]] = []
    sessions: list[int | None] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except RecursionError:
            raise PrfaasInputError("invalid request: JSON nested too deeply", where) from None
        except json.JSONDecodeError as e:
            hint = ""
            if not arrivals and line.strip() in ("{", "["):
                hint = ("; this looks like one JSON document over many lines, and a Mooncake "
                        "trace is JSON Lines: one request object per line")
            raise PrfaasInputError(f"invalid JSON ({e.msg} at column {e.colno}){hint}",
                                   where) from None
        except _DuplicateKeyError as e:
            raise PrfaasInputError(f"field {e.args[0]!r} is given twice; JSON readers keep "
                                   "only the last, so remove one", where) from None
        if not isinstance(obj, dict):
            raise PrfaasInputError(f"expected a JSON object, got {type(obj).__name__}", where)
        unknown = sorted(set(obj) - _MOONCAKE_ALLOWED)
        if unknown:
            raise PrfaasInputError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; allowed fields: "
                f"{', '.join(_MOONCAKE_REQUIRED)}, session_id", where)
        for key in _MOONCAKE_REQUIRED:
            if key not in obj:
                raise PrfaasInputError(f"missing field '{key}'", where)
        prompt = _length(obj["input_length"], "input_length", where)
        ids = obj["hash_ids"]
        if not isinstance(ids, list) or any(
                isinstance(h, bool) or not isinstance(h, int) or h < 0 for h in ids):
            raise PrfaasInputError("hash_ids must be a list of integers >= 0", where)
        max_blocks = -(-prompt // block_size)
        if len(ids) > max_blocks:
            raise PrfaasInputError(
                f"hash_ids has {len(ids)} blocks but input_length {prompt} fills at most "
                f"{max_blocks} blocks of {block_size} tokens", where)
        sid = obj.get("session_id")
        if sid is not None and (isinstance(sid, bool) or not isinstance(sid, int)):
            raise PrfaasInputError(f"session_id must be an integer or null, got {sid!r}", where)
        arrivals.append(_seconds(obj["timestamp"], "timestamp", where) / 1000.0)
        linenos.append(lineno)
        prompts.append(prompt)
        outputs.append(_length(obj["output_length"], "output_length", where))
        hashes.append(tuple(ids))
        sessions.append(sid)
    if not arrivals:
        raise PrfaasInputError("trace file is empty", p)
    return _workload(arrivals, prompts, outputs, hashes, sessions, p.stem, block_size,
                     f"mooncake trace {p}", p, linenos)


def load_azure(path: str | Path) -> Workload:
    """Load an Azure LLM inference trace 2023 CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``).

    ``TIMESTAMP`` is wall-clock ``YYYY-MM-DD HH:MM:SS.fffffff`` (up to 9 fractional digits);
    arrivals are relative to the earliest row. No block hashes.
    """
    p, lines = _read_text(path)
    index, rows = _csv_rows(p, lines, "azure", _AZURE_COLUMNS)
    stamps: list[int] = []
    linenos: list[int] = []
    prompts: list[int] = []
    outputs: list[int] = []
    for lineno, where, f in rows:
        stamps.append(_parse_azure_timestamp(_field(f, index, "TIMESTAMP", where), where))
        linenos.append(lineno)
        prompts.append(_length(_field(f, index, "ContextTokens", where), "ContextTokens", where))
        outputs.append(_length(_field(f, index, "GeneratedTokens", where), "GeneratedTokens",
                               where))
    if not stamps:
        raise PrfaasInputError("trace has a header but no data rows", p)
    t0 = min(stamps)
    arrivals = [(s - t0) / 1e9 for s in stamps]
    return _workload(arrivals, prompts, outputs, None, None, p.stem, MOONCAKE_BLOCK_SIZE,
                     f"azure trace {p}", p, linenos)


def load_vidur(path: str | Path) -> Workload:
    """Load a Vidur processed trace CSV (``arrived_at,num_prefill_tokens,num_decode_tokens``).

    A Vidur length-statistics file (``num_prefill_tokens``, ``num_decode_tokens`` but no
    ``arrived_at``, e.g. the arXiv summarisation file) has no timestamps and is rejected with a
    hint to use it as an empirical length distribution instead.
    """
    p, lines = _read_text(path)
    _reject_timestampless_vidur(p, lines)
    index, rows = _csv_rows(p, lines, "vidur", _VIDUR_COLUMNS)
    arrivals: list[float] = []
    linenos: list[int] = []
    prompts: list[int] = []
    outputs: list[int] = []
    for lineno, where, f in rows:
        arrivals.append(_seconds(_field(f, index, "arrived_at", where), "arrived_at", where))
        linenos.append(lineno)
        prompts.append(_length(_field(f, index, "num_prefill_tokens", where),
                               "num_prefill_tokens", where))
        outputs.append(_length(_field(f, index, "num_decode_tokens", where),
                               "num_decode_tokens", where))
    if not arrivals:
        raise PrfaasInputError("trace has a header but no data rows", p)
    return _workload(arrivals, prompts, outputs, None, None, p.stem, MOONCAKE_BLOCK_SIZE,
                     f"vidur trace {p}", p, linenos)


def _reject_timestampless_vidur(p: Path, lines: list[str]) -> None:
    header = _csv_header(csv.reader([lines[0]]), p)
    if "arrived_at" not in header and all(c in header for c in _VIDUR_LENGTH_COLUMNS):
        raise PrfaasInputError(
            "this Vidur file has no timestamps (no 'arrived_at' column), so it is not a "
            "request trace; use it as an empirical length distribution instead, e.g. "
            f"prompt: {{dist: empirical, trace: {p}, format: vidur}} in a synthetic workload "
            "spec (prfaas_gym.synthetic.empirical_from_trace)", f"{p}:1")


def load_burstgpt(path: str | Path, model: str | None = None,
                  log_type: str | None = None) -> Workload:
    """Load a BurstGPT CSV (``Timestamp,Model,Request tokens,Response tokens,Total tokens,
    Log Type``; ``Timestamp`` in seconds).

    Rows with ``Response tokens == 0`` are failed requests: they are skipped and counted in
    ``Workload.source``. ``model`` / ``log_type``, when given, keep only rows whose ``Model`` /
    ``Log Type`` equals them (e.g. ``"GPT-4"``, ``"Conversation log"``).
    """
    p, lines = _read_text(path)
    index, rows = _csv_rows(p, lines, "burstgpt", _BURSTGPT_COLUMNS)
    arrivals: list[float] = []
    linenos: list[int] = []
    prompts: list[int] = []
    outputs: list[int] = []
    failed = filtered = 0
    for lineno, where, f in rows:
        if model is not None and f[index["Model"]].strip() != model:
            filtered += 1
            continue
        if log_type is not None and f[index["Log Type"]].strip() != log_type:
            filtered += 1
            continue
        out = _integer(_field(f, index, "Response tokens", where), "Response tokens", where)
        if out == 0:
            failed += 1
            continue
        if out < 0:
            raise PrfaasInputError(f"Response tokens must be >= 0, got {out}", where)
        out = _length(out, "Response tokens", where)  # at most MAX_TOKENS, as every loader's
        arrivals.append(_seconds(_field(f, index, "Timestamp", where), "Timestamp", where))
        linenos.append(lineno)
        prompts.append(_length(_field(f, index, "Request tokens", where), "Request tokens",
                               where))
        outputs.append(out)
    if not arrivals:
        raise PrfaasInputError(f"no usable requests (skipped {failed} failed rows, "
                               f"{filtered} filtered rows)", p)
    source = f"burstgpt trace {p}; skipped {failed} failed rows (Response tokens == 0)"
    if filtered:
        source += f"; filtered out {filtered} rows (model={model}, log_type={log_type})"
    return _workload(arrivals, prompts, outputs, None, None, p.stem, MOONCAKE_BLOCK_SIZE,
                     source, p, linenos)


_LOADERS: dict[str, Callable[[Path], Workload]] = {
    "mooncake": load_mooncake,
    "azure": load_azure,
    "vidur": load_vidur,
    "burstgpt": load_burstgpt,
}


def infer_format(path: str | Path) -> str:
    """Guess a trace's format: ``.jsonl`` / ``.json`` or a first character ``{`` -> mooncake;
    otherwise the CSV header decides (``TIMESTAMP`` -> azure, ``arrived_at`` or
    ``num_prefill_tokens`` -> vidur, ``Request tokens`` -> burstgpt)."""
    p, lines = _read_text(path)
    first = next(ln for ln in lines if ln.strip())
    if p.suffix.lower() in (".jsonl", ".json") or first.lstrip().startswith("{"):
        return "mooncake"
    header = set(_csv_header(csv.reader([first]), p))
    if "TIMESTAMP" in header or "ContextTokens" in header:
        return "azure"
    if "arrived_at" in header or "num_prefill_tokens" in header:
        return "vidur"
    if "Request tokens" in header or "Response tokens" in header:
        return "burstgpt"
    raise PrfaasInputError(
        "cannot tell the trace format from the header; expected a Mooncake JSONL file or a "
        f"CSV with columns {', '.join(_AZURE_COLUMNS)} (azure), {', '.join(_VIDUR_COLUMNS)} "
        f"(vidur) or {', '.join(_BURSTGPT_COLUMNS)} (burstgpt); name the format (--trace-format "
        "on the command line, format: in a scenario's workload.trace)",
        f"{p}:1")


def _check_format(format: str, path: str | Path) -> str:
    if format not in _LOADERS:
        raise PrfaasInputError(f"unknown trace format {format!r}; expected one of "
                               f"{', '.join(TRACE_FORMATS)}", path)
    return format


def load_trace(path: str | Path, format: str | None = None) -> Workload:
    """Load a trace in one of :data:`TRACE_FORMATS`; ``format=None`` infers it
    (see :func:`infer_format`)."""
    fmt = infer_format(path) if format is None else _check_format(format, path)
    return _LOADERS[fmt](Path(path))


def read_lengths(path: str | Path, format: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output token counts (int64 arrays, file order) of any supported trace.

    Unlike :func:`load_trace` this also reads Vidur length-statistics files that have no
    timestamps (``num_prefill_tokens``, ``num_decode_tokens`` only).
    """
    fmt = infer_format(path) if format is None else _check_format(format, path)
    if fmt == "vidur":
        p, lines = _read_text(path)
        header = _csv_header(csv.reader([lines[0]]), p)
        if "arrived_at" not in header:
            index, rows = _csv_rows(p, lines, "vidur", _VIDUR_LENGTH_COLUMNS)
            prompts, outputs = [], []
            for _, where, f in rows:
                prompts.append(_length(_field(f, index, "num_prefill_tokens", where),
                                       "num_prefill_tokens", where))
                outputs.append(_length(_field(f, index, "num_decode_tokens", where),
                                       "num_decode_tokens", where))
            if not prompts:
                raise PrfaasInputError("trace has a header but no data rows", p)
            return np.asarray(prompts, dtype=np.int64), np.asarray(outputs, dtype=np.int64)
    w = _LOADERS[fmt](Path(path))
    return (np.fromiter((r.prompt_tokens for r in w), dtype=np.int64, count=len(w)),
            np.fromiter((r.output_tokens for r in w), dtype=np.int64, count=len(w)))


# --------------------------------------------------------------------------------------------
# transforms

def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise PrfaasInputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _retimed(w: Workload, arrival: Callable[[Request], float], note: str) -> Workload:
    reqs = [Request(r.id, arrival(r), r.prompt_tokens, r.output_tokens, r.block_hashes,
                    r.block_size, r.session_id) for r in w]
    return Workload.from_requests(reqs, name=w.name, block_size=w.block_size,
                                  source=_append(w.source, note))


def _append(source: str, note: str) -> str:
    return f"{source}; {note}" if source else note


def rebased(w: Workload, requests: Sequence[Request], note: str, time_scale: float = 1.0,
            name: str | None = None) -> Workload:
    """``requests`` (a run of ``w``'s, in arrival order) as a workload of their own: arrivals
    shifted so the first is at 0 and multiplied by ``time_scale``, ids renumbered 0..n-1."""
    return Workload(rebased_requests(requests, time_scale), name=w.name if name is None else name, block_size=w.block_size,
                    source=_append(w.source, note))


def scale_rate(w: Workload, factor: float) -> Workload:
    """Compress time by ``factor``: every arrival is divided by it (``factor > 1`` = faster,
    mean rate multiplied by ``factor``)."""
    f = _positive(factor, "rate factor")
    if w.duration_s / f > MAX_TRACE_SPAN_S:
        raise PrfaasInputError(
            f"time-scaling workload {w.name!r} to a mean rate of {w.mean_rate * f:g} req/s "
            f"would stretch it over {w.duration_s / f:.3g} s; a workload may span at most "
            f"{MAX_TRACE_SPAN_S:.0e} s")
    return _retimed(w, lambda r: r.arrival_s / f, f"time scaled x{f:g} (rate)")


def to_mean_rate(w: Workload, rate: float) -> Workload:
    """Time-scale ``w`` so that its :attr:`Workload.mean_rate` equals ``rate`` req/s.

    Needs at least two requests with distinct arrival times.
    """
    target = _positive(rate, "rate")
    if not (len(w) >= 2 and w.duration_s > 0):
        raise PrfaasInputError("to_mean_rate needs at least two requests with distinct "
                               f"arrival times (workload {w.name!r} has {len(w)})")
    return scale_rate(w, target / w.mean_rate)


def window(w: Workload, start_s: float, duration_s: float) -> Workload:
    """The requests arriving in ``[start_s, start_s + duration_s)``, shifted by ``-start_s`` so
    the window maps onto ``[0, duration_s)``. Raises if the window holds no request."""
    if isinstance(start_s, bool) or not isinstance(start_s, (int, float)) or not math.isfinite(
            start_s):
        raise PrfaasInputError(f"window start_s must be a finite number, got {start_s!r}")
    d = _positive(duration_s, "window duration_s")
    end = start_s + d
    picked = [r for r in w if start_s <= r.arrival_s < end]
    if not picked:
        last = w[-1].arrival_s if len(w) else 0.0
        raise PrfaasInputError(f"window [{start_s:g}, {end:g}) s holds no request (workload "
                               f"{w.name!r} spans 0 .. {last:g} s)")
    shifted = [Request(r.id, r.arrival_s - start_s, r.prompt_tokens, r.output_tokens,
                       r.block_hashes, r.block_size, r.session_id) for r in picked]
    return Workload.from_requests(shifted, name=w.name, block_size=w.block_size,
                                  source=_append(w.source, f"window [{start_s:g}, {end:g}) s"))


def take(w: Workload, n: int) -> Workload:
    """The first ``n`` requests (1 <= n <= len(w); use :func:`repeat` to get more)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise PrfaasInputError(f"take needs an integer n >= 1, got {n!r}")
    if n > len(w):
        raise PrfaasInputError(f"take({n}) but workload {w.name!r} has only {len(w)} "
                               "requests; use repeat() to lengthen it")
    return Workload.from_requests(w.requests[:n], name=w.name, block_size=w.block_size,
                                  source=_append(w.source, f"first {n} requests"))


def repeat(w: Workload, times: int, gap_s: float | None = None) -> Workload:
    """``times`` copies of ``w`` back to back, ``gap_s`` seconds between the last arrival of a
    copy and the first of the next (default: the mean inter-arrival time).

    Copy ``k`` (0-based) gets block hashes ``h + k * (max_hash + 1)`` and session ids
    ``s + k * (max_session + 1)``, so no two copies share cache content or sessions.
    """
    if isinstance(times, bool) or not isinstance(times, (int, np.integer)) or times < 1:
        raise PrfaasInputError(f"repeat needs an integer times >= 1, got {times!r}")
    if gap_s is None:
        if len(w) < 2 or w.duration_s <= 0:
            raise PrfaasInputError("repeat of a workload with fewer than two distinct arrival "
                                   "times needs an explicit gap_s")
        gap = w.duration_s / (len(w) - 1)
    else:
        if isinstance(gap_s, bool) or not isinstance(gap_s, (int, float)) or not (
                math.isfinite(gap_s) and gap_s >= 0):
            raise PrfaasInputError(f"repeat gap_s must be a finite number >= 0, got {gap_s!r}")
        gap = float(gap_s)
    period = w.duration_s + gap
    hash_step = 1 + max((max(r.block_hashes) for r in w if r.block_hashes), default=-1)
    sid_step = 1 + max((r.session_id for r in w if r.session_id is not None), default=-1)
    out: list[Request] = []
    for k in range(times):
        dh, ds, dt = k * hash_step, k * sid_step, k * period
        for r in w:
            hashes = tuple(h + dh for h in r.block_hashes) if dh else r.block_hashes
            sid = r.session_id + ds if r.session_id is not None else None
            out.append(Request(r.id, r.arrival_s + dt, r.prompt_tokens, r.output_tokens, hashes,
                               r.block_size, sid))
    return Workload.from_requests(out, name=w.name, block_size=w.block_size,
                                  source=_append(w.source, f"repeated x{times}, gap {gap:g} s"))


def length_stats(w: Workload) -> dict[str, float]:
    """Summary statistics of ``w``.

    Keys: ``n``, ``duration_s``, ``mean_rate`` (req/s, ``(n-1)/duration``), ``prompt_mean``,
    ``prompt_p50``, ``prompt_p90``, ``prompt_p99``, ``prompt_max``, ``output_mean``,
    ``output_p50``, ``output_p90``, ``output_p99``, ``interarrival_cv`` (std/mean of the gaps;
    NaN with fewer than 3 requests), ``block_reuse_fraction`` (fraction of all block-hash
    occurrences whose id appeared earlier in the trace: the hit ratio of an infinite cache;
    0 without hashes), ``sessions`` (distinct session ids).
    """
    n = len(w)
    if n == 0:
        raise PrfaasInputError("length_stats of an empty workload")
    prompt = np.fromiter((r.prompt_tokens for r in w), dtype=np.float64, count=n)
    output = np.fromiter((r.output_tokens for r in w), dtype=np.float64, count=n)
    arrival = np.fromiter((r.arrival_s for r in w), dtype=np.float64, count=n)
    gaps = np.diff(arrival)
    cv = float(gaps.std() / gaps.mean()) if n >= 3 and gaps.mean() > 0 else math.nan
    total = sum(len(r.block_hashes) for r in w)
    if total:
        ids = np.fromiter((h for r in w for h in r.block_hashes), dtype=np.int64, count=total)
        reuse = 1.0 - len(np.unique(ids)) / total
    else:
        reuse = 0.0
    p_q = np.percentile(prompt, [50, 90, 99])
    o_q = np.percentile(output, [50, 90, 99])
    return {
        "n": n,
        "duration_s": w.duration_s,
        "mean_rate": w.mean_rate,
        "prompt_mean": float(prompt.mean()),
        "prompt_p50": float(p_q[0]),
        "prompt_p90": float(p_q[1]),
        "prompt_p99": float(p_q[2]),
        "prompt_max": float(prompt.max()),
        "output_mean": float(output.mean()),
        "output_p50": float(o_q[0]),
        "output_p90": float(o_q[1]),
        "output_p99": float(o_q[2]),
        "interarrival_cv": cv,
        "block_reuse_fraction": reuse,
        "sessions": len({r.session_id for r in w if r.session_id is not None}),
    }
