"""Trace loaders, their error reporting, and workload transforms."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.request import Request, Workload
from prfaas_gym.workload import (
    TRACE_FORMATS,
    length_stats,
    load_azure,
    load_burstgpt,
    load_mooncake,
    load_trace,
    load_vidur,
    read_lengths,
    repeat,
    scale_rate,
    take,
    to_mean_rate,
    window,
)

TRACES = Path(__file__).parents[1].parent / "shared" / "traces"
MOONCAKE = TRACES / "mooncake" / "conversation_trace.jsonl"
AZURE_CODE = TRACES / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
VIDUR_CODE = TRACES / "vidur-processed" / "splitwise_code.csv"
VIDUR_CONV = TRACES / "vidur-processed" / "splitwise_conv.csv"
VIDUR_ARXIV = (TRACES / "vidur-processed"
               / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv")
BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared trace {path} not available")
    return path


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def mooncake_line(ts: int = 0, inp: int = 600, out: int = 10, hashes: list[int] | None = None,
                  **extra: object) -> str:
    obj = {"timestamp": ts, "input_length": inp, "output_length": out,
           "hash_ids": [0, 1] if hashes is None else hashes, **extra}
    return json.dumps(obj)


def wl(arrivals: list[float], hashes: list[tuple[int, ...]] | None = None,
       sessions: list[int | None] | None = None) -> Workload:
    reqs = [Request(i, t, 100 + i, 10, hashes[i] if hashes else (), 512,
                    sessions[i] if sessions else None) for i, t in enumerate(arrivals)]
    return Workload.from_requests(reqs, name="t")


# --------------------------------------------------------------------------------------------
# loaders on the public traces

def test_mooncake_conversation_trace_loads_with_its_published_shape() -> None:
    w = load_trace(need(MOONCAKE))
    assert len(w) == 12031
    assert w.duration_s == pytest.approx(3537, abs=1)
    assert [r.id for r in w] == list(range(len(w)))
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(w, w.requests[1:]))
    assert all(len(r.block_hashes) == math.ceil(r.prompt_tokens / 512) for r in w)
    assert {r.block_hashes[0] for r in w} == {0}
    stats = length_stats(w)
    assert stats["block_reuse_fraction"] == pytest.approx(0.366, abs=0.002)
    assert stats["prompt_mean"] == pytest.approx(12035, abs=1)


def test_azure_code_trace_parses_seven_digit_timestamps() -> None:
    w = load_azure(need(AZURE_CODE))
    assert len(w) == 8819
    assert w.duration_s == pytest.approx(3435.948, abs=1e-3)
    # Vidur's splitwise_code.csv holds the same rows with arrivals already in seconds
    v = load_vidur(need(VIDUR_CODE))
    assert np.allclose([r.arrival_s for r in w], [r.arrival_s for r in v], atol=2e-6)
    assert [r.prompt_tokens for r in w] == [r.prompt_tokens for r in v]


def test_vidur_conversation_trace_loads() -> None:
    w = load_trace(need(VIDUR_CONV))
    assert len(w) == 19366
    assert w.duration_s == pytest.approx(3501.72, abs=0.01)
    assert all(r.block_hashes == () for r in w)


def test_vidur_stats_file_without_timestamps_points_to_empirical_lengths() -> None:
    with pytest.raises(PrfaasInputError) as e:
        load_trace(need(VIDUR_ARXIV))
    assert "no timestamps" in str(e.value) and "empirical" in str(e.value)
    prompts, outputs = read_lengths(VIDUR_ARXIV)
    assert prompts.size == outputs.size == 28257
    assert prompts.max() == 4054


def test_format_inference(tmp_path: Path) -> None:
    burst = write(tmp_path, "b.csv", [BURSTGPT_HEADER, "5,ChatGPT,472,18,490,Conversation log"])
    assert load_trace(burst).source.startswith("burstgpt")
    moon = write(tmp_path, "m.txt", [mooncake_line()])
    assert load_trace(moon).source.startswith("mooncake")
    assert set(TRACE_FORMATS) == {"mooncake", "azure", "vidur", "burstgpt"}


def test_burstgpt_skips_and_counts_failed_rows(tmp_path: Path) -> None:
    p = write(tmp_path, "burst.csv", [
        BURSTGPT_HEADER,
        "10,ChatGPT,472,18,490,Conversation log",
        "12.5,GPT-4,1087,230,1317,Conversation log",
        "11,ChatGPT,0,0,0,Conversation log",
        "20,ChatGPT,417,276,693,API log",
        "21,GPT-4,600,0,600,API log",
    ])
    w = load_burstgpt(p)
    assert len(w) == 3
    assert [r.arrival_s for r in w] == [0.0, 2.5, 10.0]
    assert [r.prompt_tokens for r in w] == [472, 1087, 417]
    assert "skipped 2 failed rows" in w.source
    assert len(load_burstgpt(p, model="GPT-4")) == 1


def test_mooncake_optional_session_id_and_unsorted_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "t.jsonl", [mooncake_line(ts=5000, session_id=7),
                                    mooncake_line(ts=2000, hashes=[0]), ""])
    w = load_mooncake(p)
    assert [r.arrival_s for r in w] == [0.0, 3.0]
    assert [r.session_id for r in w] == [None, 7]
    assert w[0].block_hashes == (0,)


# --------------------------------------------------------------------------------------------
# malformed input

def error_for(path: Path, fmt: str | None = None) -> PrfaasInputError:
    with pytest.raises(PrfaasInputError) as e:
        load_trace(path, fmt)
    return e.value


def test_bad_json_reports_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "t.jsonl", [mooncake_line(), mooncake_line(), '{"timestamp": 1,'])
    err = error_for(p)
    assert err.where == f"{p}:3"
    assert ":3" in str(err) and "invalid JSON" in str(err)


@pytest.mark.parametrize(("line", "needle"), [
    (mooncake_line(prio=1), "unknown field(s) 'prio'"),
    (mooncake_line(inp=-5), "input_length must be >= 1, got -5"),
    (mooncake_line(out=0), "output_length must be >= 1, got 0"),
    (mooncake_line(inp=12.5), "input_length must be an integer"),
    ('{"timestamp": 0, "input_length": 5, "hash_ids": []}', "missing field 'output_length'"),
    (mooncake_line(hashes=[0, "x"]), "hash_ids must be a list of integers"),
    (mooncake_line(inp=600, hashes=[0, 1, 2]), "hash_ids has 3 blocks"),
    (mooncake_line(ts="soon"), "timestamp must be a number"),
    ("[1, 2]", "expected a JSON object"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 3, "input_length": 500, '
     '"hash_ids": []}', "field 'input_length' is given twice"),
])
def test_malformed_mooncake_lines_name_field_and_line(tmp_path: Path, line: str,
                                                      needle: str) -> None:
    p = write(tmp_path, "t.jsonl", [mooncake_line(), line])
    err = error_for(p)
    assert err.where == f"{p}:2"
    assert needle in str(err)


@pytest.mark.parametrize("outlier_ms", [1e12, -1e12, 1e300])
def test_a_timestamp_years_away_names_both_lines(tmp_path: Path, outlier_ms: float) -> None:
    # a unit error or a corrupt line, and a clock that could not resolve a decode step
    p = write(tmp_path, "t.jsonl", [mooncake_line(ts=0), mooncake_line(ts=outlier_ms),
                                    mooncake_line(ts=9000)])
    err = error_for(p)
    first, last = (1, 2) if outlier_ms > 0 else (2, 3)
    assert f"line {last} arrives" in str(err) and f"after line {first}" in str(err)
    assert "at most 1e+08 s" in str(err)


def test_a_csv_timestamp_years_away_names_its_line(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", ["TIMESTAMP,ContextTokens,GeneratedTokens",
                                  "2023-11-16 18:17:03.9799600,4808,10",
                                  "2029-11-16 18:17:04.0319600,12,8"])
    assert "line 3 arrives 1.89e+08 s after line 2" in str(error_for(p))


def test_wrong_csv_header_names_expected_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", ["time,prompt,output", "1,2,3"])
    err = error_for(p, "azure")
    assert err.where == f"{p}:1"
    assert "TIMESTAMP, ContextTokens, GeneratedTokens" in str(err)
    err = error_for(p, "burstgpt")
    assert "Request tokens" in str(err)
    assert "--trace-format" in str(error_for(p))


@pytest.mark.parametrize(("row", "needle"), [
    ("2023-11-16 18:17:04.0319600,-5,8", "ContextTokens must be >= 1, got -5"),
    ("2023-11-16 18:17:04.0319600,12,", "GeneratedTokens is empty"),
    ("2023-11-16 18:17:04.0319600,12", "expected 3 fields"),
    ("16/11/2023 18:17,12,8", "TIMESTAMP must look like"),
    ("2023-02-30 18:17:04.0319600,12,8", "invalid date"),
])
def test_malformed_azure_rows_count_the_header_line(tmp_path: Path, row: str,
                                                    needle: str) -> None:
    p = write(tmp_path, "t.csv", ["TIMESTAMP,ContextTokens,GeneratedTokens",
                                  "2023-11-16 18:17:03.9799600,4808,10", row])
    err = error_for(p)
    assert err.where == f"{p}:3"
    assert needle in str(err)


def test_an_unmatched_quote_is_named_at_its_line(tmp_path: Path) -> None:
    ok = "2023-11-16 18:17:03.9799600,4808,10"
    p = write(tmp_path, "t.csv", ["TIMESTAMP,ContextTokens,GeneratedTokens", ok, ok,
                                  '"2023-11-16 18:17:04.0319600,5,8', ok, ok, ok])
    err = error_for(p)
    assert err.where == f"{p}:4"
    assert "quoted field runs from line 4 to line 7 (an unmatched quote?)" in str(err)


def test_missing_empty_and_unknown_format(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert "not found" in str(error_for(missing))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert "empty" in str(error_for(empty))
    header_only = write(tmp_path, "h.csv", ["arrived_at,num_prefill_tokens,num_decode_tokens"])
    assert "no data rows" in str(error_for(header_only))
    err = error_for(write(tmp_path, "ok.jsonl", [mooncake_line()]), "sharegpt")
    assert "unknown trace format 'sharegpt'" in str(err) and "mooncake" in str(err)


# --------------------------------------------------------------------------------------------
# transforms

def test_to_mean_rate_hits_the_rate() -> None:
    w = to_mean_rate(load_trace(need(MOONCAKE)), 10.0)
    assert w.mean_rate == pytest.approx(10.0, rel=1e-9)
    assert len(w) == 12031


def test_scale_rate_compresses_time() -> None:
    w = scale_rate(wl([0.0, 1.0, 4.0]), 2.0)
    assert [r.arrival_s for r in w] == [0.0, 0.5, 2.0]
    with pytest.raises(PrfaasInputError):
        scale_rate(w, 0)


def test_window_selects_half_open_interval_and_shifts() -> None:
    w = window(wl([0.0, 1.0, 2.0, 3.0, 4.0]), 1.0, 2.0)
    assert [r.arrival_s for r in w] == [0.0, 1.0]
    assert [r.prompt_tokens for r in w] == [101, 102]
    assert [r.id for r in w] == [0, 1]
    with pytest.raises(PrfaasInputError, match="holds no request"):
        window(w, 100.0, 5.0)


def test_take_first_n() -> None:
    w = wl([0.0, 1.0, 2.0])
    assert [r.arrival_s for r in take(w, 2)] == [0.0, 1.0]
    with pytest.raises(PrfaasInputError, match="repeat"):
        take(w, 4)


def test_repeat_places_copies_back_to_back_without_shared_cache() -> None:
    w = wl([0.0, 1.0, 3.0], hashes=[(0, 1), (0, 2), (5,)], sessions=[0, None, 2])
    r = repeat(w, 3)
    assert len(r) == 9
    # default gap: the mean inter-arrival time (1.5 s)
    assert [q.arrival_s for q in r] == [0.0, 1.0, 3.0, 4.5, 5.5, 7.5, 9.0, 10.0, 12.0]
    assert [q.block_hashes for q in r][:6] == [(0, 1), (0, 2), (5,), (6, 7), (6, 8), (11,)]
    assert [q.session_id for q in r][:6] == [0, None, 2, 3, None, 5]
    ids = [set(h for q in r.requests[3 * k: 3 * k + 3] for h in q.block_hashes) for k in range(3)]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    assert length_stats(r)["block_reuse_fraction"] == pytest.approx(
        length_stats(w)["block_reuse_fraction"])
    gapped = repeat(w, 2, gap_s=10.0)
    assert gapped[3].arrival_s == pytest.approx(13.0)


def test_length_stats_on_a_small_workload() -> None:
    s = length_stats(wl([0.0, 1.0, 2.0, 3.0], hashes=[(0, 1), (0, 2), (3,), (0, 1)]))
    assert s["n"] == 4
    assert s["mean_rate"] == pytest.approx(1.0)
    assert s["interarrival_cv"] == pytest.approx(0.0)
    assert s["prompt_mean"] == pytest.approx(101.5)
    assert s["prompt_max"] == 103
    assert s["block_reuse_fraction"] == pytest.approx(3 / 7)


def test_a_json_document_or_a_mooncake_line_in_the_wrong_loader_says_what_it_is(
        tmp_path: Path) -> None:
    doc = write(tmp_path, "doc.json", ["{", '  "timestamp": 0,', '  "input_length": 5', "}"])
    err = error_for(doc)
    assert err.where == f"{doc}:1" and "JSON Lines: one request object per line" in str(err)
    line = ('{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [1]}')
    jl = write(tmp_path, "t.jsonl", [line])
    err = error_for(jl, "azure")
    assert "first line is a JSON object" in str(err) and "mooncake" in str(err)


# ---------------------------------------------------------------------------------------------
# Loader and workload-statistics contracts


BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"


def test_burstgpt_negative_response_tokens_is_an_error_not_a_failed_row(tmp_path: Path) -> None:
    """Only ``Response tokens == 0`` marks a failed request; a negative count is a corrupt
    row, refused at its line."""
    p = tmp_path / "burst.csv"
    p.write_text("\n".join([BURSTGPT_HEADER, "10,ChatGPT,472,18,490,Conversation log",
                            "11,ChatGPT,300,-5,295,Conversation log"]) + "\n")
    with pytest.raises(PrfaasInputError, match="Response tokens must be >= 0") as e:
        load_burstgpt(p)
    assert e.value.where == f"{p}:3"
    p.write_text("\n".join([BURSTGPT_HEADER, "10,ChatGPT,472,18,490,Conversation log",
                            "11,ChatGPT,300,999999999999,295,Conversation log"]) + "\n")
    with pytest.raises(PrfaasInputError, match="Response tokens must be <= 10,000,000") as e:
        load_burstgpt(p)
    assert e.value.where == f"{p}:3"


def test_interarrival_cv_needs_three_requests() -> None:
    """With one gap there is no spread to measure: the CV is NaN below three requests."""
    reqs = [Request(i, t, 100, 10, (), 512, None) for i, t in enumerate([0.0, 2.0])]
    s = length_stats(Workload.from_requests(reqs, name="two"))
    assert math.isnan(s["interarrival_cv"])
    assert s["mean_rate"] == pytest.approx(0.5)
