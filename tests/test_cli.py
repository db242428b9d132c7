"""The prfaas command line: JSON contracts, and clear errors without tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from prfaas_gym.cli import main
from prfaas_gym.scenario import scenario_dir

RESULT_KEYS = {"requests", "completed", "rejected", "failed", "goodput_rps", "throughput_rps",
               "ttft_s", "tpot_s", "slo_attainment", "offload_fraction", "link_utilization",
               "sim_requests_per_s"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prfaas_gym.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_plan_json_reproduces_table6(capsys):
    assert main(["plan", "--preset", "paper-case-study", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"prfaas", "homogeneous", "naive"}
    for v in out.values():
        assert {"lambda_max", "threshold_tokens", "n_prfaas", "n_prefill", "n_decode",
                "ttft_mean_s", "ttft_p90_s"} <= set(v)
    assert out["prfaas"]["lambda_max"] == pytest.approx(3.24, rel=0.03)
    assert out["homogeneous"]["threshold_tokens"] is None
    assert (out["prfaas"]["n_prefill"], out["prfaas"]["n_decode"]) == (3, 5)


def test_plan_for_a_scenario_says_it_plans_on_incremental_lengths(capsys):
    """With prefix reuse the planner's L is shorter than the prompts, and the table says so."""
    assert main(["plan", "--scenario", "bursty-fluctuating"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"L: incremental prefill lengths of 20,000 requests, mean ([\d,]+) tokens "
                  r"\(prompts ([\d,]+);", out)
    assert m, out
    incremental, prompt = (int(g.replace(",", "")) for g in m.groups())
    assert incremental < 0.7 * prompt


def test_plan_for_a_scenario_gives_the_threshold_its_policies_use(capsys, tmp_path):
    """The table optimises the local split; the scenario's threshold policies route by the t
    planned for its own deployment, which the plan reports beside it (text and JSON)."""
    from prfaas_gym.scenario import load_scenario

    sc = load_scenario("bursty-fluctuating")
    assert main(["plan", "--scenario", "bursty-fluctuating", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    dep = sc.profile.deployment
    assert out["as_deployed"] == {"n_prfaas": dep.n_prfaas, "n_prefill": dep.n_prefill,
                                  "n_decode": dep.n_decode,
                                  "threshold_tokens": sc.threshold_tokens,
                                  "threshold_from": "planner",
                                  "lambda_max": pytest.approx(sc.planned_lambda)}
    assert out["as_deployed"]["threshold_tokens"] != out["prfaas"]["threshold_tokens"]
    assert main(["plan", "--scenario", "bursty-fluctuating"]) == 0
    assert (f"as deployed (N_prfaas {dep.n_prfaas}, N_p {dep.n_prefill}, N_d "
            f"{dep.n_decode}): t = {sc.threshold_tokens:,.0f} tokens") in capsys.readouterr().out
    # at another load, the t that simulate/compare/train --rate use
    assert main(["plan", "--scenario", "bursty-fluctuating", "--rate", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["as_deployed"]["threshold_tokens"] \
        == sc.with_rate(5.0).threshold_tokens != sc.threshold_tokens
    # no local prefill instance: no threshold to plan, and the plan does not invent one
    assert main(["plan", "--scenario", "paper-naive"]) == 0
    assert "no local prefill instance, so every request prefills remotely and no t is used" \
        in capsys.readouterr().out
    assert main(["plan", "--scenario", "paper-naive", "--json"]) == 0
    naive = json.loads(capsys.readouterr().out)["as_deployed"]
    assert naive["threshold_from"] == "unused" and naive["threshold_tokens"] is None
    # a threshold set in the scenario is no more used there
    spec = yaml.safe_load((scenario_dir() / "paper-naive.yaml").read_text())
    spec["threshold_tokens"] = 8000
    path = tmp_path / "naive-8000.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["plan", "--scenario", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["as_deployed"]["threshold_from"] == "unused"


def test_simulate_json(capsys):
    assert main(["simulate", "--scenario", "bursty-fluctuating", "--policy", "prfaas-dual",
                 "--requests", "200", "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert RESULT_KEYS <= set(out)
    assert out["requests"] == 200
    for k in ("ttft_s", "tpot_s"):
        assert set(out[k]) == {"mean", "p50", "p90", "p99"}


def test_simulate_rate_override(capsys):
    main(["simulate", "--scenario", "paper-case-study", "--policy", "prfaas-threshold",
          "--requests", "100", "--rate", "0.05", "--json"])
    light = json.loads(capsys.readouterr().out)
    assert light["throughput_rps"] == pytest.approx(0.05, rel=0.2)


def test_simulate_rate_plans_the_threshold_for_that_load(capsys):
    """--rate is the load the run plays, so the threshold policy's plan is solved for it
    (bursty's prefix reuse, and so its incremental lengths, depend on the load)."""
    from prfaas_gym.scenario import load_scenario

    assert main(["simulate", "--scenario", "bursty-fluctuating", "--policy", "prfaas-threshold",
                 "--requests", "50", "--rate", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sc = load_scenario("bursty-fluctuating")
    assert out["threshold_tokens"] == sc.with_rate(5.0).threshold_tokens != sc.threshold_tokens
    assert out["sources"]["workload"]["rate"] == 5.0
    assert out["sources"]["workload"]["rate_given_as"] == "--rate"


def test_simulate_with_trace_and_bandwidth_trace(shared_traces, capsys):
    bw = next((shared_traces / "genet-abr-bandwidth").rglob("*.log"), None) or \
        sorted(p for p in (shared_traces / "genet-abr-bandwidth/abr_trace/testing_trace/fcc-test").iterdir())[0]
    assert main(["simulate", "--scenario", "bursty-fluctuating", "--policy", "conductor",
                 "--trace", str(shared_traces / "azure-llm-2023/AzureLLMInferenceTrace_code.csv"),
                 "--trace-format", "azure", "--bandwidth-trace", str(bw), "--requests", "300",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["requests"] == 300


def test_compare_writes_table_csv_json_and_plots(tmp_path, capsys):
    out_dir = tmp_path / "cmp"
    assert main(["compare", "--scenario", "bursty-fluctuating", "--policies",
                 "prfaas-threshold,conductor", "--seeds", "2", "--requests", "150",
                 "--out", str(out_dir), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "conductor" in text and "±" in text
    for f in ("runs.csv", "summary.json", "ttft_cdf.png", "goodput.png", "timeseries.png"):
        assert (out_dir / f).stat().st_size > 0
    summary = json.loads((out_dir / "summary.json").read_text())
    assert set(summary["summary"]) == {"prfaas-threshold", "conductor"}
    assert len((out_dir / "runs.csv").read_text().splitlines()) == 1 + 4


@pytest.mark.parametrize("args,needle", [
    (["simulate", "--scenario", "nope", "--policy", "random"], "unknown scenario"),
    (["simulate", "--scenario", "bursty-fluctuating", "--policy", "nope"], "unknown policy"),
    (["simulate", "--scenario", "bursty-fluctuating", "--policy", "random", "--trace",
      "/does/not/exist.jsonl"], "not found"),
])
def test_bad_input_exits_nonzero_without_traceback(args, needle):
    p = run_cli(*args)
    assert p.returncode != 0
    assert needle in p.stderr
    assert "Traceback" not in p.stderr


def test_malformed_trace_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n'
                   '{"timestamp": 5, "input_length": -3, "output_length": 5, "hash_ids": []}\n')
    p = run_cli("simulate", "--scenario", "bursty-fluctuating", "--policy", "random",
                "--trace", str(bad), "--trace-format", "mooncake")
    assert p.returncode != 0
    assert f"{bad}:2" in p.stderr or "bad.jsonl:2" in p.stderr
    assert "Traceback" not in p.stderr


def test_non_monotone_bandwidth_trace_is_named(tmp_path):
    bad = tmp_path / "bw.txt"
    bad.write_text("0 10\n1 12\n0.5 11\n")
    p = run_cli("simulate", "--scenario", "bursty-fluctuating", "--policy", "random",
                "--bandwidth-trace", str(bad), "--requests", "10")
    assert p.returncode != 0
    assert "bw.txt" in p.stderr and "line 3" in p.stderr
    assert "Traceback" not in p.stderr


def test_invalid_scenario_file_exits_cleanly(tmp_path):
    s = tmp_path / "s.yaml"
    s.write_text(Path(__file__).resolve().parents[1].joinpath(
        "prfaas_gym/data/scenarios/paper-case-study.yaml").read_text() + "\nbogus_key: 1\n")
    p = run_cli("simulate", "--scenario", str(s), "--policy", "random")
    assert p.returncode != 0 and "bogus_key" in p.stderr and "Traceback" not in p.stderr


_SIM = ["simulate", "--scenario", "bursty-fluctuating", "--policy", "conductor",
        "--requests", "20"]
_CMP = ["compare", "--scenario", "bursty-fluctuating", "--policies", "conductor", "--seeds",
        "1", "--requests", "20", "--no-progress"]


@pytest.mark.parametrize("argv,out,needle", [
    (_SIM, "adir", "--out is a directory"),
    (_SIM, "afile/x.json", "afile is not an existing directory"),
    (_CMP, "afile", "--out exists and is not a directory"),
    (_CMP, "afile/sub", "cannot create the directory"),
])
def test_a_bad_out_path_fails_before_the_run(tmp_path, capsys, argv, out, needle):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("keep me")
    assert main([*argv, "--out", str(tmp_path / out)]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err
    assert captured.out == ""  # nothing ran
    assert (tmp_path / "afile").read_text() == "keep me"


def test_compare_refuses_an_out_dir_where_a_result_file_is_a_directory(tmp_path, capsys):
    """Found only after the run, it used to cost the earlier results and the new ones."""
    (tmp_path / "timeseries.png").mkdir()
    (tmp_path / "runs.csv").write_text("earlier")
    assert main([*_CMP, "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "timeseries.png there is a directory" in captured.err and captured.out == ""
    assert (tmp_path / "runs.csv").read_text() == "earlier"


def test_compare_replaces_an_earlier_comparison_and_removes_its_other_files(tmp_path, capsys):
    (tmp_path / "heldout.json").write_text("{}")  # an earlier heldout.py run's
    (tmp_path / "runs.csv").write_text("earlier")
    (tmp_path / "notes.txt").write_text("mine")  # not a result file: kept
    assert main([*_CMP, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert not (tmp_path / "heldout.json").exists()
    assert (tmp_path / "runs.csv").read_text().startswith("policy,seed,")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failed_write_leaves_the_earlier_comparison_whole(tmp_path, capsys, monkeypatch):
    import agents.compare

    assert main([*_CMP, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_plot = agents.compare.plot

    def full_disk_at_the_last_plot(*a, **k):
        real_plot(*a, **k)  # the tables and two plots are staged by now
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(agents.compare, "plot", full_disk_at_the_last_plot)
    assert main([*_CMP, "--requests", "30", "--out", str(tmp_path)]) == 2
    assert "cannot write the results (No space left on device); an earlier comparison's " \
        "files there are as they were" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporaries


def test_compare_ignores_a_directory_named_as_a_heldout_file(tmp_path, capsys):
    (tmp_path / "ratios.png").mkdir()  # heldout.py writes it; compare neither writes nor removes it
    assert main([*_CMP, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "ratios.png").is_dir() and (tmp_path / "runs.csv").is_file()


@pytest.mark.parametrize("bad", [["--scenario", "nosuch"], ["--policies", "nosuch"]])
def test_compare_on_bad_input_creates_no_out_directory(tmp_path, capsys, bad):
    argv = list(_CMP)
    argv[argv.index(bad[0]) + 1] = bad[1]
    assert main([*argv, "--out", str(tmp_path / "new" / "sub")]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name,content", [
    ("policy.onnx", b"\x08\x07onnx bytes"), ("run.json", b'{"algo": "ppo"}'),
    ("eval.json", b'[{"step": 0}]'), ("validation.png", b"\x89PNG"),
    ("trace.json", b'{"timestamp": 0}'),
])
def test_simulate_out_does_not_replace_a_file_that_is_not_a_result(tmp_path, capsys, name,
                                                                    content):
    target = tmp_path / name
    target.write_bytes(content)
    assert main([*_SIM, "--out", str(target)]) == 2
    captured = capsys.readouterr()
    assert "--out exists and is not an earlier simulate result" in captured.err
    assert captured.out == "" and target.read_bytes() == content
    assert main([*_SIM, "--out", str(tmp_path / "new.onnx.result")]) == 0  # a new name: fine
    capsys.readouterr()
    assert main([*_SIM, "--seed", "1", "--out", str(tmp_path / "new.onnx.result")]) == 0
    assert json.loads((tmp_path / "new.onnx.result").read_text())["seed"] == 1  # replaced
    assert main([*_SIM, "--out", "/dev/null"]) == 0  # a device is written through


def test_simulate_out_is_written_whole_or_not_at_all(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.json"
    assert main([*_SIM, "--out", str(out)]) == 0
    first = out.read_text()
    assert json.loads(first)["requests"] == 20
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind

    def full_disk(self, *a, **k):
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full_disk)
    assert main([*_SIM, "--seed", "1", "--out", str(out)]) == 2
    assert "cannot write the result (No space left on device)" in capsys.readouterr().err
    monkeypatch.undo()
    assert out.read_text() == first
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_compare_keeps_policies_whose_file_names_match(tmp_path, capsys):
    policies = Path(__file__).resolve().parents[1] / "agents" / "policies"
    specs = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for f in policies.glob("bursty-fluctuating.*"):
            (tmp_path / d / f.name).write_bytes(f.read_bytes())
        specs.append(str(tmp_path / d / "bursty-fluctuating.onnx"))
    assert main(["compare", "--scenario", "bursty-fluctuating", "--policies",
                 ",".join([*specs, "conductor"]), "--seeds", "1", "--requests", "60",
                 "--no-progress", "--out", str(tmp_path / "cmp")]) == 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert list(summary["summary"]) == [*specs, "conductor"]
    capsys.readouterr()
    assert main([*_CMP[:4], "conductor,random,conductor", *_CMP[5:]]) == 2
    assert "--policies lists conductor more than once" in capsys.readouterr().err


def test_negative_seed_and_plan_trace_without_scenario_are_refused(capsys):
    with pytest.raises(SystemExit):
        main([*_SIM, "--seed", "-1"])
    assert "--seed: must be >= 0, got -1" in capsys.readouterr().err
    assert main(["plan", "--trace", "/does/not/matter.csv"]) == 2
    assert "--trace needs --scenario" in capsys.readouterr().err
    assert main(["plan", "--trace-format", "mooncake"]) == 2  # was silently ignored
    assert "--trace-format needs --scenario" in capsys.readouterr().err
    assert main(["plan", "--rate", "5"]) == 2
    assert "--rate needs --scenario" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*_SIM, "--rate", "inf"])
    assert "--rate: must be a finite number > 0, got inf" in capsys.readouterr().err


@pytest.mark.parametrize("script,args,needle", [
    ("heldout.py", ["--scenario", "bursty-fluctuating", "--policy", "nope"],
     "heldout.py: error: unknown policy 'nope'"),
    ("bench_decision_latency.py", ["/does/not/exist.onnx"], "ONNX file not found"),
    ("lookahead_ceiling.py", ["--seeds", "0"], "--seeds: must be >= 1, got 0"),
    ("heldout.py", ["--scenario", "paper-case-study", "--policy",
                    "agents/policies/paper-case-study.onnx", "--out", "README.md"],
     "--out exists and is not a directory"),  # before the runs, not after them
    ("heldout.py", ["--scenario", "paper-case-study", "--policy", "conductor"],
     "--policy 'conductor' is a heuristic"),  # would have scored the conductor as learned
])
def test_benchmarks_report_bad_input_in_one_line(script, args, needle):
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, str(root / "benchmarks" / script), *args],
                       capture_output=True, text=True, timeout=300, cwd=root)
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_latency_benchmark_names_a_role_run_as_given(tmp_path):
    """A role run is refused naming the directory given, not the temporary export."""
    (tmp_path / "run.json").write_text(json.dumps({"algo": "maskable_ppo",
                                                    "env_id": "PrfaasRoles-v0"}))
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_decision_latency.py"),
                        str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=root)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{tmp_path}: is a PrfaasRoles-v0 run" in p.stderr and "prfaas-bench-" not in p.stderr


def test_threshold_tuning_module_reports_bad_input_in_one_line():
    root = Path(__file__).resolve().parents[1]
    for args, needle in (([], "the following arguments are required: scenario"),
                         (["nope"], "unknown scenario 'nope'")):
        p = subprocess.run([sys.executable, "-m", "agents.tuning", *args], capture_output=True,
                           text=True, timeout=120, cwd=root)
        assert p.returncode == 2
        assert needle in p.stderr and "Traceback" not in p.stderr


def _constant_csv(tmp_path: Path, gbps: float) -> Path:
    p = tmp_path / f"bw{gbps:g}.csv"
    p.write_text(f"time_s,gbps\n0,{gbps}\n10,{gbps}\n")
    return p


def _simulate_json(capsys, *args: str) -> dict:
    assert main(["simulate", "--scenario", "bursty-fluctuating", "--policy", "remote-all",
                 "--requests", "40", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_bandwidth_trace_level_is_the_scenarios_unless_told_and_the_result_says_which(
        tmp_path, capsys):
    bw = _constant_csv(tmp_path, 1.0)
    scaled = _simulate_json(capsys, "--bandwidth-trace", str(bw))
    assert scaled["link"]["mean_gbps"] == pytest.approx(25.0)  # bursty's link.capacity_gbps
    recorded = _simulate_json(capsys, "--bandwidth-trace", str(bw), "--bandwidth-gbps",
                              "recorded")
    assert recorded["link"]["mean_gbps"] == pytest.approx(1.0)
    five = _simulate_json(capsys, "--bandwidth-trace", str(bw), "--bandwidth-gbps", "5")
    assert five["link"]["mean_gbps"] == pytest.approx(5.0)
    # a 1 Gbit/s link carries less than a 25 Gbit/s one: the level reaches the simulation
    assert recorded["goodput_rps"] < scaled["goodput_rps"]
    assert recorded["sources"]["bandwidth"] == {"kind": "trace", "path": str(bw)}
    assert scaled["sources"]["bandwidth"]["scale_to_gbps"] == 25.0
    text_run = ["simulate", "--scenario", "bursty-fluctuating", "--policy", "remote-all",
                "--requests", "20", "--bandwidth-trace", str(bw), "--bandwidth-gbps", "recorded"]
    assert main(text_run) == 0
    assert f"link: {bw}, mean 1 Gbit/s, RTT 10 ms" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "needle"), [
    (["--bandwidth-format", "csv"], "--bandwidth-format applies to --bandwidth-trace"),
    (["--bandwidth-gbps", "5"], "--bandwidth-gbps applies to --bandwidth-trace"),
    (["--trace-format", "azure"], "--trace-format applies to --trace"),
    (["--bandwidth-gbps", "1e308"], "--bandwidth-gbps: must be <= 1e+06 Gbit/s"),
])
def test_a_format_or_level_without_its_trace_is_refused(args, needle):
    p = run_cli("simulate", "--scenario", "bursty-fluctuating", "--policy", "conductor", *args)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("level", [[], ["--bandwidth-gbps", "recorded"], "scenario"])
def test_a_link_that_carries_nothing_is_refused(tmp_path, level):
    if level == "scenario":
        sc = tmp_path / "zero.yaml"
        sc.write_text("name: zero\nprofile: paper-case-study\nworkload:\n  synthetic:\n"
                      "    arrivals: {process: poisson, rate: 1.0}\n"
                      "    prompt: {dist: constant, value: 1000}\n"
                      "    output: {dist: constant, value: 8}\n"
                      "bandwidth: {kind: constant, gbps: 0}\npolicy: prfaas-dual\n")
        args = ["--scenario", str(sc)]
    else:
        args = ["--scenario", "bursty-fluctuating", "--bandwidth-trace",
                str(_constant_csv(tmp_path, 0.0)), *level]
    p = run_cli("simulate", "--policy", "prfaas-dual", *args)
    assert p.returncode == 2 and "carries nothing: its capacity is zero throughout" in p.stderr


def _vidur_trace(tmp_path: Path, n: int, same_time: bool = False) -> Path:
    p = tmp_path / "t.csv"
    rows = [f"{0 if same_time else k * 0.5},{500 + k},{8}" for k in range(n)]
    p.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + "\n".join(rows) + "\n")
    return p


def test_a_trace_replays_whole_and_its_source_is_recorded(tmp_path, capsys):
    # The scenario's requests: (4000 for bursty's synthetic workload; 10 here) is not a cap on
    # a --trace; asking for more than the trace has says so.
    sc = tmp_path / "ten.yaml"
    sc.write_text("name: ten\nprofile: paper-case-study\nworkload:\n  synthetic:\n"
                  "    arrivals: {process: poisson, rate: 1.0}\n"
                  "    prompt: {dist: constant, value: 1000}\n    output: {dist: constant, value: 8}\n"
                  "  requests: 10\nbandwidth: {kind: constant, gbps: 10}\npolicy: conductor\n")
    trace = _vidur_trace(tmp_path, 30)
    assert main(["simulate", "--scenario", str(sc), "--policy", "conductor", "--trace",
                 str(trace), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["requests"] == 30
    assert out["sources"]["workload"] == {"trace": str(trace), "format": None,
                                          "given_as": "--trace", "rate": None}
    out_dir = tmp_path / "cmp"
    assert main(["compare", "--scenario", str(sc), "--policies", "conductor", "--seeds", "1",
                 "--trace", str(trace), "--requests", "100", "--out", str(out_dir),
                 "--no-progress"]) == 0
    assert "--requests 100, but the all split of the trace has 30; replaying all 30" in \
        capsys.readouterr().err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["sources"]["workload"]["trace"] == str(trace)
    assert summary["threshold_tokens"] is None  # no threshold policy ran
    header = (out_dir / "runs.csv").read_text().splitlines()[0]
    assert header.endswith("link_mean_gbps,link_rtt_s,link_trace")
    assert ",rejected,role_switches," in header


def test_compare_out_works_without_the_planner_when_no_policy_needs_it(tmp_path, capsys):
    # Every arrival at one instant: no train split for the planner, which no policy here uses.
    trace = _vidur_trace(tmp_path, 3, same_time=True)
    out_dir = tmp_path / "cmp"
    assert main(["compare", "--scenario", "bursty-fluctuating", "--policies", "conductor",
                 "--seeds", "1", "--trace", str(trace), "--out", str(out_dir),
                 "--no-progress"]) == 0
    assert (out_dir / "summary.json").exists()


def test_ci95_uses_student_t_at_every_sample_size():
    from agents.compare import _T975, _t975, ci95

    assert ci95([0.0, 2.0]) == pytest.approx((1.0, 12.706))  # df 1
    xs = [float(i % 2) for i in range(41)]  # df 40: t = 2.021, not the normal's 1.960
    sd = np.std(xs, ddof=1)
    assert ci95(xs)[1] == pytest.approx(2.0211 * sd / np.sqrt(41), rel=1e-4)
    assert _T975[-1] > _t975(31) > _t975(60) > _t975(1000) > 1.96  # continuous past the table
    mean, half = ci95([4.5, float("nan"), None])  # one defined value has no interval, not ±0
    assert mean == 4.5 and np.isnan(half)
    from agents.compare import fmt_ci

    assert fmt_ci(mean, half) == "4.500"  # the mean alone, never "± nan"
    assert fmt_ci(float("nan"), float("nan")) == "n/a"
    assert fmt_ci(1.0, float("inf")) == "1.000 ± inf"  # an unbounded interval is shown


def test_table_says_on_how_many_seeds_a_metric_is_defined(capsys):
    from agents.compare import print_table, seed_stat

    stats = {m: seed_stat([1.0, 3.0]) for m in ("goodput_rps", "slo_attainment",
                                                "throughput_rps", "offload_fraction",
                                                "link_utilization", "rejected")}
    stats["role_switches"] = seed_stat([0.0, 0.0])
    # the TTFT of a policy that completed nothing on one of its two seeds
    stats |= {m: seed_stat([4.662, float("nan")]) for m in ("ttft_mean_s", "ttft_p90_s")}
    print_table({"p": stats})
    out = capsys.readouterr().out
    assert "2.000 ± 12.706" in out  # goodput over both seeds, with its interval
    assert out.count("4.662 (1 of 2 seeds)") == 2 and "± nan" not in out


def test_tuned_threshold_is_tuned_at_the_compared_rate_and_recorded(tmp_path, capsys,
                                                                    monkeypatch):
    import agents.tuning

    calls = []

    def fake_tune(scenario, rate=None, **kw):
        calls.append(rate)
        return 12345.0, {}

    monkeypatch.setattr(agents.tuning, "tune_threshold", fake_tune)
    out = tmp_path / "cmp"
    assert main(["compare", "--scenario", "paper-case-study", "--policies",
                 "prfaas-threshold-tuned,conductor", "--seeds", "1", "--requests", "40",
                 "--rate", "1.5", "--out", str(out), "--no-progress"]) == 0
    assert calls == [1.5]
    meta = json.loads((out / "summary.json").read_text())
    assert meta["tuned_threshold_tokens"] == 12345.0
    err = capsys.readouterr().err
    assert "prfaas-threshold-tuned was tuned on the train split" in err and "in-sample" in err
    assert main(["compare", "--scenario", "paper-case-study", "--policies",
                 "prfaas-threshold-tuned", "--seeds", "1", "--requests", "40",
                 "--split", "eval", "--no-progress"]) == 0
    assert calls == [1.5, None] and "in-sample" not in capsys.readouterr().err


def test_tuning_runs_on_the_train_split_at_the_given_rate(monkeypatch):
    import agents.tuning
    from prfaas_gym.scenario import load_scenario

    seen = set()
    real = agents.tuning.run_policy

    def spy(scenario, policy, seed, split="all", n=None, rate=None):
        seen.add((split, rate, n))
        return real(scenario, policy, seed, split=split, n=20, rate=rate)

    monkeypatch.setattr(agents.tuning, "run_policy", spy)
    best, table = agents.tuning.tune_threshold(load_scenario("paper-case-study"), seeds=(0,),
                                               rate=2.5)
    assert seen == {("train", 2.5, 1000)} and best in table and len(table) > 3


def test_heldout_never_labels_the_learned_policy_like_a_heuristic():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from heldout import learned_label
    finally:
        sys.path.pop(0)
    assert learned_label("runs/conductor", ["conductor", "prfaas-dual"]) == "learned:conductor"
    assert learned_label("agents/policies/b.onnx", ["conductor"]) == "b.onnx"


def test_heldout_headroom_is_serving_every_request_at_the_same_span():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from heldout import serve_all_ceiling
    finally:
        sys.path.pop(0)
    mean, half = serve_all_ceiling([0.8, 0.5, 0.0])  # a seed that served nothing: no ratio
    assert mean == pytest.approx((1.25 + 2.0) / 2) and half > 0
    assert serve_all_ceiling([1.0, 1.0]) == (1.0, 0.0)


def test_heldout_pairs_goodput_and_slo_met_per_seed_in_strict_json(tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ho"
    p = subprocess.run([sys.executable, str(root / "benchmarks" / "heldout.py"), "--scenario",
                        "paper-case-study", "--policy",
                        str(root / "agents" / "policies" / "paper-case-study.onnx"),
                        "--seeds", "2", "--requests", "30", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr

    def refuse(name: str) -> None:
        raise AssertionError(f"heldout.json holds {name}")

    ho = json.loads((out / "heldout.json").read_text(), parse_constant=refuse)
    runs = json.loads((out / "summary.json").read_text())["runs"]
    res = {(r["policy"], r["seed"]): r["result"] for r in runs}
    best = ho["best_heuristic"]
    assert set(ho["learned"]) == {"paper-case-study.onnx"}
    for learned, ratios in ho["learned"].items():
        for seed in (0, 1):
            assert ratios["ratios"][str(seed)] == pytest.approx(
                res[learned, seed]["goodput_rps"] / res[best, seed]["goodput_rps"])
            assert ratios["slo_met_ratios"][str(seed)] == pytest.approx(
                res[learned, seed]["slo_met"] / res[best, seed]["slo_met"])
    assert ho["goodput"][best]["n"] == 2
    assert "SLO-meeting requests, learned / best, paired per seed" in p.stdout


def test_heldout_scores_several_policies_side_by_side(tmp_path):
    """--policy repeats: a routing and a role policy, each with its own paired ratio row;
    one path twice is refused."""
    root = Path(__file__).resolve().parents[1]
    pol = root / "agents" / "policies"
    route, roles = pol / "bursty-fluctuating.onnx", pol / "bursty-fluctuating-roles.onnx"
    out = tmp_path / "ho"
    cmd = [sys.executable, str(root / "benchmarks" / "heldout.py"), "--scenario",
           "bursty-fluctuating", "--seeds", "1", "--requests", "200"]
    p = subprocess.run(cmd + ["--policy", str(route), "--policy", str(roles), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    ho = json.loads((out / "heldout.json").read_text())
    assert list(ho["learned"]) == [route.name, roles.name]
    assert ho["learned"][roles.name]["policy"] == str(roles)
    runs = json.loads((out / "summary.json").read_text())["runs"]
    g = {r["policy"]: r["result"]["goodput_rps"] for r in runs}
    assert ho["learned"][roles.name]["ratios"]["0"] == pytest.approx(
        g[roles.name] / g[ho["best_heuristic"]])
    for name in (route.name, roles.name):
        assert f"{name}: learned / best goodput, paired per seed" in p.stdout
    # the table has a role-switch column exactly when some policy switched roles
    switched = any(r["result"]["role_switches"] > 0 for r in runs)
    assert ("role switches |" in p.stdout) == switched
    assert (out / "ratios.png").stat().st_size > 1000
    p = subprocess.run(cmd + ["--policy", str(route), "--policy", str(route)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "a --policy is given twice" in p.stderr


def test_heldout_labels_two_runs_best_models_by_their_directory():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from heldout import learned_labels
    finally:
        sys.path.pop(0)
    got = learned_labels(["runs/a/best_model.zip", "runs/b/best_model.zip"], ["conductor"])
    assert got == {"a/best_model.zip": "runs/a/best_model.zip",
                   "b/best_model.zip": "runs/b/best_model.zip"}
    assert learned_labels(["x/p.onnx"], ["conductor"]) == {"p.onnx": "x/p.onnx"}
    got = learned_labels(["a/m.onnx", "b/m.onnx", "c.onnx"], [])  # only the clash is relabelled
    assert list(got) == ["a/m.onnx", "b/m.onnx", "c.onnx"]
    with pytest.raises(ValueError, match="given twice"):
        learned_labels(["runs/x", "runs/x/"], [])


def test_heldout_scores_a_policy_on_your_own_traces_eval_split(tmp_path):
    """heldout.py takes --trace and --rate as train and compare do, and records them."""
    root = Path(__file__).resolve().parents[1]
    trace = tmp_path / "mine.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 2000 * i, "input_length": 3000 + 97 * i,
                                         "output_length": 50, "hash_ids": []}) + "\n"
                             for i in range(300)))
    out = tmp_path / "ho"
    p = subprocess.run([sys.executable, str(root / "benchmarks" / "heldout.py"), "--scenario",
                        "paper-case-study", "--policy",
                        str(root / "agents" / "policies" / "paper-case-study.onnx"),
                        "--trace", str(trace), "--rate", "0.25", "--seeds", "1",
                        "--requests", "20", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"paper-case-study (--trace {trace}, --rate 0.25), eval split" in p.stdout
    ho = json.loads((out / "heldout.json").read_text())
    assert ho["sources"]["workload"] == {"trace": str(trace), "format": None,
                                         "given_as": "--trace", "rate": 0.25,
                                         "rate_given_as": "--rate"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"] == ho["sources"]
    # the runs played the trace at --rate (it arrives at 0.5 req/s), all served
    assert summary["summary"]["conductor"]["throughput_rps"]["mean"] == pytest.approx(0.25,
                                                                                     rel=0.2)


def test_compare_says_when_every_seed_replays_the_same_requests(tmp_path, capsys):
    """Seeds draw their own trace window only from a split larger than --requests; otherwise
    they replay the same requests, and on a fixed link the runs (and a ±0 interval) are
    identical, which compare says rather than presenting them as a spread."""
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 2000 + i,
                                         "output_length": 20, "hash_ids": []}) + "\n"
                             for i in range(100)))
    base = ["compare", "--scenario", "paper-case-study", "--trace", str(trace), "--policies",
            "conductor", "--no-progress"]
    note = "every seed replays the same requests"
    assert main([*base, "--seeds", "2", "--split", "eval"]) == 0
    err = capsys.readouterr().err
    assert f"{note} (the whole eval split, 20 requests)" in err
    assert "this link is fixed: the runs are identical" in err
    assert main([*base, "--seeds", "2", "--split", "eval", "--requests", "10"]) == 0
    assert note not in capsys.readouterr().err
    assert main([*base, "--seeds", "1", "--split", "eval"]) == 0
    assert note not in capsys.readouterr().err
    link = tmp_path / "link.csv"
    link.write_text("time_s,gbps\n" + "".join(f"{t},{10 + t % 7}\n" for t in range(300)))
    assert main([*base, "--seeds", "2", "--bandwidth-trace", str(link)]) == 0
    err = capsys.readouterr().err
    assert f"{note} (the trace from its start" in err and "identical" not in err


def test_compare_waits_for_another_comparison_writing_to_its_out_dir(tmp_path):
    """While another comparison holds the results directory, compare runs but waits, says so,
    and writes nothing; it writes its whole set once the other is done."""
    import fcntl
    import os

    out = tmp_path / "cmp"
    out.mkdir()
    (out / "runs.csv").write_text("another comparison's\n")
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prfaas_gym.cli", "compare", "--scenario",
             "paper-case-study", "--policies", "conductor", "--seeds", "1", "--requests", "20",
             "--out", str(out), "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert any("waiting for another comparison to finish writing to" in line
                   for line in proc.stderr)  # read until it says so (or ends)
        assert proc.poll() is None  # blocked on the lock, not finished
        assert (out / "runs.csv").read_text() == "another comparison's\n"
        assert not (out / "summary.json").exists()
    finally:
        os.close(fd)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"wrote {out / 'summary.json'}" in stdout
    assert (out / "runs.csv").read_text().startswith("policy,seed,")


def test_source_differences_name_what_changed_and_nothing_else(tmp_path, monkeypatch):
    """The note on a policy scored on other requests or another link than it trained on:
    one file named two ways, or one load given two ways, is no difference; another rate,
    file or link is named; a record this code cannot read is said to be so."""
    from agents.registry import source_differences
    from prfaas_gym.scenario import load_scenario

    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 500 + i,
                                         "output_length": 8, "hash_ids": []}) + "\n"
                             for i in range(50)))
    link = tmp_path / "l.csv"
    link.write_text("time_s,gbps\n0,10\n1,20\n")
    monkeypatch.chdir(tmp_path)
    mooncake = load_scenario("mooncake-conversation")
    mine = mooncake.with_trace("t.jsonl").with_rate(2.0)
    assert source_differences(mine.sources(), mooncake.with_trace(str(trace))
                              .with_rate(2).sources()) == []
    (tmp_path / "alias.jsonl").symlink_to(trace)
    assert source_differences(mine.sources(), mooncake.with_trace("alias.jsonl")
                              .with_rate(2).sources()) == []
    assert source_differences(mooncake.sources(), mooncake.with_rate(4.4).sources()) == []
    bursty = load_scenario("bursty-fluctuating")
    assert source_differences(bursty.sources(),
                              bursty.with_rate(bursty.mean_rate()).sources()) == []
    assert source_differences(mine.sources(), mooncake.with_trace(str(trace)).sources()) == [
        "was trained with its requests at 2 req/s; this run plays them at its own arrival "
        "times"]
    assert source_differences(mine.sources(), mine.with_rate(3).sources()) == [
        "was trained with its requests at 2 req/s; this run plays them at 3 req/s"]
    (diff,) = source_differences(mine.sources(), mooncake.sources())
    assert diff.startswith(f"was trained with its requests from {trace} at 2 req/s; this run "
                           "takes them from ") and diff.endswith("at 4.4 req/s")
    assert source_differences(mine.sources(), mine.with_bandwidth_trace(
        "l.csv", scale_to_gbps=30.0).sources()) == [
        "was trained on a constant 100 Gbit/s; this run uses a trace link from "
        f"{link} at mean 30 Gbit/s"]
    assert source_differences({"bandwidth": 100}, {"bandwidth": {"kind": "constant",
                                                                 "gbps": 100}}) == []
    # records from this release's first commits kept --rate as run_rate, no synthetic mean
    old = mine.sources()
    old["workload"] = {k: v for k, v in old["workload"].items() if k != "rate"}
    old["workload"]["run_rate"] = 2.0
    assert source_differences(old, mine.sources()) == []
    old = bursty.sources()
    del old["workload"]["rate"]
    assert source_differences(old, bursty.sources()) == []
    # a hand-edited record: said, not a traceback
    assert "records no readable scenario_sources" in source_differences("x", mine.sources())[0]
    for odd in ({"workload": {"trace": 5, "rate": "3"}, "bandwidth": {"kind": "trace"}},
                {"workload": None, "bandwidth": {"scale_to_gbps": "30", "path": "\0"}},
                {"workload": {"synthetic": None, "rate": [3]}}):
        assert all(isinstance(d, str) for d in source_differences(odd, mine.sources()))


def test_same_links_tells_a_fixed_link_from_one_a_seed_draws(tmp_path):
    from prfaas_gym.cli import same_links
    from prfaas_gym.scenario import load_scenario

    assert same_links(load_scenario("mooncake-conversation"), "eval", 3)  # constant 100
    assert not same_links(load_scenario("bursty-fluctuating"), "eval", 3)  # ou
    spec = yaml.safe_load((scenario_dir() / "mooncake-conversation.yaml").read_text())
    spec["bandwidth"] = {"kind": "constant", "gbps": 20, "mean_gbps_range": [2, 40]}
    spec["workload"]["trace"]["path"] = "../shared/traces/mooncake/conversation_trace.jsonl"
    path = tmp_path / "ranged.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert not same_links(load_scenario(str(path)), "eval", 3)


@pytest.mark.parametrize("script", ["slo_bound.py", "lookahead_ceiling.py"])
def test_bound_scripts_take_your_own_trace_and_rate(tmp_path, script):
    """slo_bound.py and lookahead_ceiling.py take --trace and --rate as heldout.py does, and
    say so in their heading."""
    root = Path(__file__).resolve().parents[1]
    trace = tmp_path / "mine.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 500 * i, "input_length": 8000 + 53 * i,
                                         "output_length": 30, "hash_ids": []}) + "\n"
                             for i in range(200)))
    p = subprocess.run([sys.executable, str(root / "benchmarks" / script), "--scenario",
                        "paper-case-study", "--trace", str(trace), "--rate", "0.5", "--seeds",
                        "1"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"paper-case-study (--trace {trace}, --rate 0.5), eval split" in p.stdout
    assert "| 0 | 40 |" in p.stdout  # the trace's eval split: its last 20%


def test_a_path_named_like_a_heuristic_runs_the_heuristic_and_says_so(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conductor").mkdir()  # e.g. a run directory
    assert main(["simulate", "--scenario", "paper-case-study", "--policy", "conductor",
                 "--requests", "20", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["policy"] == "conductor"
    assert "pass ./conductor" in captured.err


def test_compare_writes_strict_json_when_a_metric_is_undefined(tmp_path, capsys):
    # every request rejected: no TTFT exists, and summary.json held NaN (not JSON)
    trace = tmp_path / "huge.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 9_000_000,
                                         "output_length": 10, "hash_ids": []}) + "\n"
                             for i in range(5)))
    out = tmp_path / "cmp"
    assert main(["compare", "--scenario", "paper-case-study", "--policies", "conductor",
                 "--trace", str(trace), "--seeds", "2", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()

    def refuse(name: str) -> None:
        raise AssertionError(f"summary.json holds {name}")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=refuse)
    assert summary["summary"]["conductor"]["ttft_p90_s"] == {"mean": None, "ci95": None, "n": 0}
    assert summary["summary"]["conductor"]["rejected"]["n"] == 2


def _sim_on(trace: Path, *extra: str) -> list[str]:
    return ["simulate", "--scenario", "bursty-fluctuating", "--trace", str(trace),
            "--trace-format", "mooncake", "--requests", "5", *extra]


def test_simulate_out_never_replaces_an_input_of_its_run(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 2000,
                                         "output_length": 10, "hash_ids": []}) + "\n"
                             for i in range(5)))
    before = trace.read_bytes()
    assert main(_sim_on(trace, "--policy", "conductor", "--out", str(trace))) == 2
    assert "--out would replace an input of this run" in capsys.readouterr().err
    assert trace.read_bytes() == before  # the trace, not the result
    onnx = Path(__file__).resolve().parents[1] / "agents" / "policies" / "paper-case-study.onnx"
    pol = tmp_path / "pol"
    pol.mkdir()
    for f in (onnx, onnx.with_name("paper-case-study.manifest.json")):
        (pol / f.name).write_bytes(f.read_bytes())
    for target in ("paper-case-study.onnx", "paper-case-study.manifest.json"):
        assert main(_sim_on(trace, "--policy", str(pol / "paper-case-study.onnx"), "--out",
                            str(pol / target))) == 2
        assert "would replace an input" in capsys.readouterr().err
    assert main(_sim_on(trace, "--policy", "conductor", "--out", "")) == 2
    assert "--out is empty" in capsys.readouterr().err


def test_out_is_checked_against_what_the_run_reads_not_against_names(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a folder named like the heuristic or the shipped scenario holds results, not inputs
    for folder in ("conductor", "bursty-fluctuating"):
        (tmp_path / folder).mkdir()
        for _ in range(2):  # a rerun over its own result is fine
            assert main([*_SIM, "--out", f"{folder}/sim.json"]) == 0
    capsys.readouterr()
    # a trace the scenario file names, and the shipped scenario file itself, are inputs
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 2000, "output_length": 10,
                                 "hash_ids": []}) + "\n")
    d = yaml.safe_load(open(scenario_dir()
                            / "mooncake-conversation.yaml"))
    d["workload"]["trace"]["path"] = "t.jsonl"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    shipped = scenario_dir() / "bursty-fluctuating.yaml"
    for argv in (["simulate", "--scenario", "s.yaml", "--policy", "conductor", "--out",
                  "t.jsonl"],
                 [*_SIM, "--out", str(shipped)]):
        before = Path(argv[-1]).read_bytes()
        assert main(argv) == 2
        assert "would replace an input of this run" in capsys.readouterr().err
        assert Path(argv[-1]).read_bytes() == before


def test_a_comparison_is_not_written_into_its_bandwidth_trace_folder(tmp_path, capsys):
    # every file of a trace_dir is read as a bandwidth trace: a runs.csv there breaks it
    bw = tmp_path / "links"
    bw.mkdir()
    (bw / "a.csv").write_text("time_s,gbps\n0,10\n10,20\n")
    d = yaml.safe_load(open(scenario_dir()
                            / "paper-case-study.yaml"))
    d["bandwidth"] = {"kind": "trace_dir", "path": "links", "format": "csv"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    assert main(["compare", "--scenario", str(tmp_path / "s.yaml"), "--policies", "conductor",
                 "--seeds", "1", "--requests", "5", "--no-progress", "--out", str(bw)]) == 2
    assert "would replace an input of this run" in capsys.readouterr().err
    assert sorted(p.name for p in bw.iterdir()) == ["a.csv"]


def test_a_failed_write_through_a_symlink_leaves_its_target_whole(tmp_path, monkeypatch):
    from prfaas_gym.cli import write_atomically
    from prfaas_gym.errors import PrfaasInputError

    real = tmp_path / "real.json"
    real.write_text("old result")
    link = tmp_path / "link.json"
    link.symlink_to(real)

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("prfaas_gym.cli.os.replace", full_disk)
    with pytest.raises(PrfaasInputError, match="link.json: cannot write the result"):
        write_atomically(link, "new result " * 1000)
    assert real.read_text() == "old result" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_simulate_out_writes_through_a_symlink_and_keeps_permissions(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 2000, "output_length": 10,
                                 "hash_ids": []}) + "\n")
    real = tmp_path / "real.json"
    assert main(_sim_on(trace, "--policy", "local-only", "--out", str(real))) == 0
    real.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert main(_sim_on(trace, "--policy", "conductor", "--out", str(link))) == 0
    capsys.readouterr()
    assert link.is_symlink()  # written through, not replaced by a regular file
    assert json.loads(real.read_text())["policy"] == "conductor"
    assert main(_sim_on(trace, "--policy", "conductor", "--out", str(real))) == 0
    assert real.stat().st_mode & 0o777 == 0o600  # a private result stays private


def test_a_comparison_replaces_every_file_of_an_earlier_one(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "heldout.json").write_text('{"scenario": "an earlier run"}')
    (out / "notes.txt").write_text("mine")
    assert main([*_CMP, "--out", str(out)]) == 0
    capsys.readouterr()
    assert not (out / "heldout.json").exists()  # it described another comparison
    assert (out / "notes.txt").read_text() == "mine"  # not a result file: kept
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files
    assert json.loads((out / "summary.json").read_text())["scenario"] == "bursty-fluctuating"


def test_deployment_option_reaches_compare_and_its_report(tmp_path, capsys):
    """compare --deployment runs the scenario with those counts, says so in the heading
    and records it in summary.json; a malformed value is refused by name."""
    out = tmp_path / "c"
    assert main(["compare", "--scenario", "paper-case-study", "--deployment",
                 "n_prefill=2,n_decode=6", "--policies", "conductor", "--seeds", "1",
                 "--requests", "40", "--out", str(out), "--no-progress"]) == 0
    assert "--deployment n_prefill=2,n_decode=6" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"]["deployment"] == {"n_prfaas": 4, "n_prefill": 2, "n_decode": 6,
                                                "given_as": "--deployment"}
    for bad, says in (("n_prefill=4,n_prefill=5", "n_prefill is given twice"),
                      ("n_prefill", "expected KEY=N"), ("n_prefill=", "expected KEY=N"),
                      ("n_prefill=4.0", "expected KEY=N"), ("n_prefill=1e3", "expected KEY=N"),
                      ("n_prefill=+4", "expected KEY=N"), ("n_prefill=1_0", "expected KEY=N")):
        assert main(["compare", "--scenario", "paper-case-study", "--deployment", bad,
                     "--policies", "conductor", "--seeds", "1", "--requests", "40"]) == 2
        assert f"--deployment: {says}" in capsys.readouterr().err
    for given in ("n_prefill=4", ""):
        assert main(["plan", "--deployment", given]) == 2
        assert "--deployment needs --scenario" in capsys.readouterr().err


def test_a_policy_trained_on_another_deployment_says_so():
    from agents.registry import source_differences

    trained = {"deployment": {"n_prfaas": 4, "n_prefill": 4, "n_decode": 4,
                              "given_as": "--deployment"}}
    now = {"deployment": {"n_prfaas": 4, "n_prefill": 3, "n_decode": 5}}
    assert source_differences(trained, now) == [
        "was trained on a deployment of 4 PrfaaS + 4 prefill / 4 decode nodes; this run "
        "deploys 4 PrfaaS + 3 prefill / 5 decode nodes"]
    same = {"deployment": {"n_prfaas": 4, "n_prefill": 3, "n_decode": 5}}
    assert source_differences(same, now) == []
    assert source_differences({}, now) == []  # a record from before deployments were kept
