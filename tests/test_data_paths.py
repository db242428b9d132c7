"""Where a relative data path is found: what the user typed wins over the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prfaas_gym.data_paths import resolve_path
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.scenario import load_scenario


def test_a_typed_path_is_the_working_directory_file_before_prfaas_traces(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.jsonl").write_text("{}\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.jsonl").write_text("{}\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("PRFAAS_TRACES", str(elsewhere))
    assert resolve_path("mine.jsonl", None, "--trace", typed=True) == work / "mine.jsonl"
    # a shipped scenario's path (no folder of its own) is $PRFAAS_TRACES's first: a file of
    # that name in the working directory must not replace the public trace
    assert resolve_path("mine.jsonl", None, "workload.trace.path") == elsewhere / "mine.jsonl"
    (work / "mine.jsonl").unlink()
    assert resolve_path("mine.jsonl", None, "--trace", typed=True) == elsewhere / "mine.jsonl"


def test_a_scenario_path_is_its_folder_first_and_the_error_lists_where_it_looked(
        tmp_path, monkeypatch):
    scen = tmp_path / "scen"
    scen.mkdir()
    (scen / "t.txt").write_text("x")
    (tmp_path / "t.txt").write_text("y")
    monkeypatch.chdir(tmp_path)
    assert resolve_path("t.txt", scen, "s.yaml: workload.trace.path") == scen / "t.txt"
    monkeypatch.delenv("PRFAAS_TRACES", raising=False)
    with pytest.raises(PrfaasInputError) as e:
        resolve_path("nope.txt", scen, "s.yaml: workload.trace.path")
    msg = str(e.value)
    assert msg.startswith("s.yaml: workload.trace.path: file not found: nope.txt (looked in ")
    assert f"{scen}, {tmp_path}," in msg and "shared" in msg


@pytest.fixture
def traces_in_env(shared_traces, tmp_path, monkeypatch) -> Path:
    """The public traces as ``$PRFAAS_TRACES``, run from an empty working directory."""
    monkeypatch.setenv("PRFAAS_TRACES", str(shared_traces))
    monkeypatch.chdir(tmp_path)
    return shared_traces


def test_a_scenario_bandwidth_trace_is_found_in_the_shared_traces(traces_in_env, tmp_path):
    # found like a workload trace (it was only looked for beside the scenario)
    shared_traces = traces_in_env
    rel = "genet-pantheon-cc/cc_trace"
    assert (shared_traces / rel).is_dir()
    d = yaml.safe_load((Path(load_scenario.__globals__["scenario_dir"]())
                        / "paper-case-study.yaml").read_text())
    d["bandwidth"] = {"kind": "trace_dir", "path": rel, "format": "pantheon", "limit": 3}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    sc = load_scenario(str(p))
    assert sc.bandwidth(0).n_segments > 1
    assert sc.sources()["bandwidth"]["path"] == str(shared_traces / rel)  # where it was found
    d["bandwidth"]["path"] = "no/such/dir"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(PrfaasInputError, match=r"bandwidth\.path: file not found: no/such/dir"):
        load_scenario(str(p)).bandwidth(0)


def test_an_empirical_prompt_trace_is_found_in_the_shared_traces(traces_in_env):
    # as the README's Vidur row has it: `prompt: {dist: empirical, trace: F}` with F relative
    # to the public traces (it was looked for only beside the scenario or in the cwd)
    from prfaas_gym import synthetic

    rel = "vidur-processed/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
    assert (traces_in_env / rel).is_file()
    spec = {"arrivals": {"process": "uniform", "rate": 2.0},
            "prompt": {"dist": "empirical", "trace": rel, "format": "vidur"},
            "output": {"dist": "constant", "value": 16}}
    w = synthetic.generate(spec, 200, 0)
    assert len(w) == 200 and max(r.prompt_tokens for r in w) <= 4054
