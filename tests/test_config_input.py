"""Bad numbers and unreadable files in scenario and profile YAML are clear errors.

NaN or infinity where a finite number is meant, a prefill polynomial that is negative, a
binary or a directory given as a YAML file, a trace split with no requests: each raises a
:class:`PrfaasInputError` that names the file and the key (or the trace and the split).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import (
    DecodeCost,
    Deployment,
    LinkSpec,
    ModelSpec,
    PrefillCost,
    Slo,
    load_profile,
)
from prfaas_gym.scenario import load_scenario, scenario_dir
from prfaas_gym.simulator import SimConfig

PROFILES = Path(__file__).resolve().parents[1] / "prfaas_gym" / "data" / "profiles"


def _scenario(name: str = "paper-case-study") -> dict:
    return yaml.safe_load((scenario_dir() / f"{name}.yaml").read_text())


def _profile(name: str = "single-host") -> dict:
    return yaml.safe_load((PROFILES / f"{name}.yaml").read_text())


def _write(tmp_path: Path, data: object, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def _one_request_trace(tmp_path: Path) -> Path:
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps({"timestamp": 0, "input_length": 100, "output_length": 10,
                             "hash_ids": []}) + "\n")
    return p


# ------------------------------------------------------------------ D3: NaN / inf / sign

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("mutate,key", [
    (lambda d: d.update(slo={"ttft_s": NAN, "tpot_s": 0.025}), "slo.ttft_s"),
    (lambda d: d.update(slo={"ttft_s": 10.0, "tpot_s": INF}), "slo.tpot_s"),
    (lambda d: d.update(sim={"telemetry_interval_s": NAN}), "sim.telemetry_interval_s"),
    (lambda d: d.update(sim={"telemetry_interval_s": INF}), "sim.telemetry_interval_s"),
    (lambda d: d.update(sim={"admission_max_wait_s": NAN}), "sim.admission_max_wait_s"),
    (lambda d: d.update(sim={"max_drain_s": NAN}), "sim.max_drain_s"),
    (lambda d: d.update(sim={"record_timeseries": 1}), "sim.record_timeseries"),
    (lambda d: d.update(link={"capacity_gbps": NAN}), "link.capacity_gbps"),
    (lambda d: d.update(link={"capacity_gbps": INF}), "link.capacity_gbps"),
    (lambda d: d.update(link={"capacity_gbps": 10**400}), "link.capacity_gbps"),
    (lambda d: d.update(link={"rtt_s": INF}), "link.rtt_s"),
    (lambda d: d["deployment"].update(switch_delay_s=NAN), "deployment.switch_delay_s"),
    (lambda d: d.update(env={"max_drain_s": NAN}), "env.max_drain_s"),
    (lambda d: d.update(threshold_tokens=INF), "threshold_tokens"),
    (lambda d: d.update(threshold_tokens=NAN), "threshold_tokens"),
    (lambda d: d["workload"].update(eval_fraction=NAN), "workload.eval_fraction"),
    (lambda d: d.update(randomize={"link_gbps": [0, INF]}), "randomize.link_gbps"),
    (lambda d: d.update(randomize={"link_gbps": [0, 40.0]}), "randomize.link_gbps"),
    (lambda d: d.update(randomize={"rate_scale": [0.0, 1.4]}), "randomize.rate_scale"),
    (lambda d: d.update(randomize={"rate_scale": [0.5, NAN]}), "randomize.rate_scale"),
])
def test_scenario_non_finite_or_out_of_range_number_is_named(tmp_path, mutate, key):
    d = _scenario()
    mutate(d)
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(_write(tmp_path, d))
    assert str(e.value).startswith(f"{tmp_path / 's.yaml'}: {key}:"), str(e.value)


def test_scenario_trace_rate_must_be_finite(tmp_path):
    d = _scenario("mooncake-conversation")
    d["workload"]["trace"]["rate"] = NAN
    with pytest.raises(PrfaasInputError, match=r"s\.yaml: workload\.trace\.rate: .*finite"):
        load_scenario(_write(tmp_path, d))


def test_infinite_max_drain_means_no_limit(tmp_path):
    d = _scenario()
    d["env"]["max_drain_s"] = INF
    d["sim"] = {"max_drain_s": INF}
    sc = load_scenario(_write(tmp_path, d))
    assert sc.max_drain_s == INF and sc.sim.max_drain_s == INF


@pytest.mark.parametrize("mutate,key", [
    (lambda d: d["model"].update(kv_per_token_mib=NAN), "model.kv_per_token_mib"),
    (lambda d: d["model"].update(kv_fixed_mib=INF), "model.kv_fixed_mib"),
    (lambda d: d["link"].update(capacity_gbps=NAN), "link.capacity_gbps"),
    (lambda d: d["link"].update(rtt_s=INF), "link.rtt_s"),
    (lambda d: d["slo"].update(ttft_s=NAN), "slo.ttft_s"),
    (lambda d: d["hardware"]["fast"]["prefill"].update(poly=[NAN]), "hardware.fast.prefill.poly"),
    (lambda d: d["hardware"]["fast"]["prefill"].update(poly=[0.01, INF]),
     "hardware.fast.prefill.poly"),
    (lambda d: d["hardware"]["fast"]["decode"].update(step_base_s=INF),
     "hardware.fast.decode.step_base_s"),
    (lambda d: d["hardware"]["fast"]["decode"].update(kv_capacity_gib=NAN),
     "hardware.fast.decode.kv_capacity_gib"),
    (lambda d: d["deployment"]["local"].update(rdma_gbps=NAN), "deployment.local.rdma_gbps"),
    (lambda d: d["deployment"]["local"].update(switch_delay_s=INF),
     "deployment.local.switch_delay_s"),
])
def test_profile_non_finite_number_is_named(tmp_path, mutate, key):
    d = _profile()
    mutate(d)
    p = _write(tmp_path, d, "p.yaml")
    with pytest.raises(PrfaasInputError) as e:
        load_profile(p)
    assert str(e.value).startswith(f"{p}: {key}:"), str(e.value)
    assert "finite" in str(e.value)


@pytest.mark.parametrize("key,value,needle", [
    ("seconds", NAN, "must be a finite number, got nan"),
    ("seconds", True, "must be a number, got True"),  # was read as 1.0 s
    ("tokens", "1e300", "must be a number, got the string '1e300'"),  # was read as 1e300
])
def test_profile_table_entry_that_is_not_a_number_is_named(tmp_path, key, value, needle):
    d = _profile("paper-case-study")
    hw = next(h for h in d["hardware"].values() if "table" in h["prefill"])
    hw["prefill"]["table"][key][1] = value
    p = _write(tmp_path, d, "p.yaml")
    with pytest.raises(PrfaasInputError, match=rf"prefill\.table\.{key}\[1\]: {needle}"):
        load_profile(p)


@pytest.mark.parametrize("poly,bad_at", [
    ([-1.0, -5.0e-5, 1.0e-9], "T(1024) = -1.05 s"),  # negative
    ([0.01, 5e-5, -1e-9], "T(25600) = 0.6346 s < T(24576) = 0.6348 s"),  # peaks at 25,000
    ([0.0, 0.0], "T(1024) = 0 s"),                   # zero
])
def test_prefill_polynomial_must_be_positive_and_increasing(tmp_path, poly, bad_at):
    d = _profile()
    d["hardware"]["fast"]["prefill"]["poly"] = poly
    p = _write(tmp_path, d, "p.yaml")
    with pytest.raises(PrfaasInputError) as e:
        load_profile(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: hardware.fast.prefill.poly:"), msg
    assert bad_at in msg and "up to 1,048,576 tokens" in msg, msg


def test_a_fit_with_a_small_negative_term_is_accepted_if_it_holds_up(tmp_path):
    # positive and increasing up to 2^20 tokens despite c2 < 0 (a least-squares fit's shape)
    d = _profile()
    d["hardware"]["fast"]["prefill"]["poly"] = [0.469, 1.30e-4, -5.0e-11]
    load_profile(_write(tmp_path, d, "p.yaml"))


def test_a_run_refuses_a_prompt_past_where_the_prefill_fit_turns_down(tmp_path):
    """Such a fit loads (it holds up to 2^20 tokens), but a longer prompt would have
    prefilled in negative time: T(5M) = -674 s for this one."""
    from prfaas_gym.request import Request, Workload
    from prfaas_gym.simulator import Simulator

    d = _profile()
    for hw in d["hardware"].values():
        hw["prefill"] = {"poly": [0.469, 1.0e-4, -4.7e-11]}
    prof = load_profile(_write(tmp_path, d, "p.yaml"))
    limit = prof.local_hw.prefill.valid_tokens
    assert 1 << 20 < limit < 1_100_000  # the fit peaks at 1,063,830 tokens
    assert prof.local_hw.prefill.time(limit) > prof.local_hw.prefill.time(limit - 1000)
    Simulator(prof, Workload([Request(0, 0.0, limit, 2)]))  # up to the limit: runs
    with pytest.raises(PrfaasInputError, match=rf"request 1 has a 5,000,000-token prompt, "
                       rf"but the prefill curve of hardware '\w+' in profile '\S+' turns "
                       rf"down past {limit:,} tokens"):
        Simulator(prof, Workload([Request(0, 0.0, 100, 2), Request(1, 1.0, 5_000_000, 2)]))
    from prfaas_gym.planner import plan

    with pytest.raises(PrfaasInputError, match=rf"a 5,000,000-token prefill, but the prefill "
                       rf"curve .* turns down past {limit:,} tokens"):
        plan(prof.with_deployment(n_prfaas=1), [1000, 5_000_000])
    shipped = load_profile("paper-case-study")  # holds up over every length a trace may hold
    assert shipped.local_hw.prefill.valid_tokens == shipped.prfaas_hw.prefill.valid_tokens \
        == 10_000_000


def test_a_peak_between_the_check_points_is_caught_and_an_inflection_is_not_a_turn():
    peak = 2**20 - 100  # between two of the load check's points: it stepped over it
    with pytest.raises(PrfaasInputError, match="turns down at 1,048,47[56] tokens"):
        PrefillCost(coeffs=(1.0, 2e-12 * peak, -1e-12))
    a, k = 2e6, 1e-18  # T = k (l - a)^3 + 10: its slope touches 0 at a and rises again
    flat = PrefillCost(coeffs=(10 - k * a**3, 3 * k * a * a, -3 * k * a, k))
    assert flat.valid_tokens == 10_000_000


def test_cost_dataclasses_reject_non_finite_values():
    with pytest.raises(PrfaasInputError, match="capacity_gbps"):
        LinkSpec(capacity_gbps=NAN)
    with pytest.raises(PrfaasInputError, match=r"capacity_gbps must be a number in \(0, 1e\+06\]"):
        LinkSpec(capacity_gbps=1e9)  # a profile's link in bit/s, not Gbit/s
    with pytest.raises(PrfaasInputError, match="rtt_s"):
        LinkSpec(capacity_gbps=10.0, rtt_s=INF)
    with pytest.raises(PrfaasInputError, match="tpot_s"):
        Slo(ttft_s=1.0, tpot_s=NAN)
    with pytest.raises(PrfaasInputError, match="step_per_seq_s"):
        DecodeCost(step_base_s=0.01, step_per_seq_s=NAN)
    with pytest.raises(PrfaasInputError, match="kv_capacity_gib"):
        DecodeCost(step_base_s=0.01, kv_capacity_gib=INF)
    with pytest.raises(PrfaasInputError, match="kv_per_token_mib"):
        ModelSpec(kv_fixed_mib=1.0, kv_per_token_mib=NAN)
    with pytest.raises(PrfaasInputError, match="rdma_gbps"):
        Deployment(1, "a", 1, 1, "a", rdma_gbps=INF)
    with pytest.raises(PrfaasInputError, match="poly"):
        PrefillCost(coeffs=(-1.0, 1e-4))
    with pytest.raises(PrfaasInputError, match="finite"):
        PrefillCost(tokens=(0.0, NAN), seconds=(0.1, 0.2))
    with pytest.raises(PrfaasInputError, match="telemetry_interval_s"):
        SimConfig(telemetry_interval_s=NAN)
    with pytest.raises(PrfaasInputError, match="admission_max_wait_s"):
        SimConfig(admission_max_wait_s=NAN)
    with pytest.raises(PrfaasInputError, match="max_drain_s"):
        SimConfig(max_drain_s=NAN)
    assert SimConfig(max_drain_s=INF).max_drain_s == INF  # the default: no limit


def test_typo_sized_values_are_refused_before_they_stall_a_run():
    """A 1e11-layer model made a run spin forever on the last layer's sliver of KV; an RTT
    of 1e12 s (milliseconds written as seconds, and more) ran on."""
    from prfaas_gym.bandwidth import BandwidthTrace

    with pytest.raises(PrfaasInputError, match="model layers must be <= 10,000, got 100,000,000,000"):
        ModelSpec(kv_fixed_mib=1.0, kv_per_token_mib=0.1, layers=10**11)
    assert ModelSpec(kv_fixed_mib=1.0, kv_per_token_mib=0.1, layers=10_000).layers == 10_000
    with pytest.raises(PrfaasInputError, match=r"link rtt_s must be a number in \[0, 2000\]"):
        LinkSpec(capacity_gbps=10.0, rtt_s=1e12)
    with pytest.raises(PrfaasInputError, match=r"rtt_s must be a number in \[0, 2000\]"):
        BandwidthTrace.constant(10.0, rtt_s=1e4)
    assert BandwidthTrace.constant(10.0, rtt_s=2000.0).rtt_s == 2000.0


# ------------------------------------------------------- D11 / D12: unreadable YAML files

def test_binary_yaml_is_a_clear_error(tmp_path):
    p = tmp_path / "binary.yaml"
    p.write_bytes(b"\x89PNG\x00\xff\xfe")
    with pytest.raises(PrfaasInputError, match=r"binary\.yaml:1: .*not UTF-8"):
        load_scenario(p)
    with pytest.raises(PrfaasInputError, match=r"binary\.yaml:1: .*not UTF-8"):
        load_profile(p)


@pytest.mark.parametrize("load", [load_scenario, load_profile])
def test_directory_or_empty_path_is_a_clear_error(tmp_path, load):
    with pytest.raises(PrfaasInputError, match="is a directory") as e:
        load(tmp_path)
    assert str(tmp_path) in str(e.value)
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(PrfaasInputError, match="is a directory"):
        load(tmp_path / "d.yaml")
    with pytest.raises(PrfaasInputError, match="empty"):
        load("")


def test_scenario_naming_a_directory_as_its_profile(tmp_path):
    (tmp_path / "prof.yaml").mkdir()
    d = _scenario()
    d["profile"] = str(tmp_path / "prof.yaml")
    with pytest.raises(PrfaasInputError, match="is a directory, not a profile"):
        load_scenario(_write(tmp_path, d))


# ----------------------------------------------------------------- D13: empty trace split

def test_empty_trace_split_names_the_trace_and_the_split(tmp_path):
    trace = _one_request_trace(tmp_path)
    sc = load_scenario("paper-homogeneous").with_trace(str(trace))
    with pytest.raises(PrfaasInputError) as e:
        sc.workload(0, split="train")
    msg = str(e.value)
    assert msg.startswith("--trace:") and str(trace) in msg
    assert "train split" in msg and "no requests" in msg and "1 request" in msg
    assert len(sc.workload(0, split="eval")) == 1  # the one request is in the eval window


def test_planner_on_an_empty_train_split_says_so(tmp_path):
    trace = _one_request_trace(tmp_path)
    sc = load_scenario("paper-case-study").with_trace(str(trace))
    with pytest.raises(PrfaasInputError) as e:
        sc.planned_threshold(sc.profile)  # solved on the train split
    msg = str(e.value)
    assert str(trace) in msg and "train split" in msg and "planner" in msg


# ------------------------------------------------------------------ D18 / D19: labels

def test_profile_integer_key_given_a_float_is_named(tmp_path):
    d = _profile()
    d["hardware"]["fast"]["decode"]["max_batch"] = 32.5
    p = _write(tmp_path, d, "p.yaml")
    with pytest.raises(PrfaasInputError) as e:
        load_profile(p)
    assert str(e.value).startswith(f"{p}: hardware.fast.decode.max_batch: must be an integer")


@pytest.mark.parametrize("section,value,label", [
    ("deployment", {"n_prfaas": 4, "n_prefill": 3, "n_decode": 0}, "deployment"),
    ("link", {"capacity_gbps": 0}, "link.capacity_gbps"),
    ("slo", {"ttft_s": 0, "tpot_s": 0.025}, "slo.ttft_s"),
])
def test_override_errors_name_their_own_section(tmp_path, section, value, label):
    d = _scenario()
    d[section] = value
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(_write(tmp_path, d))
    assert e.value.where == f"{tmp_path / 's.yaml'}: {label}", str(e.value)
    assert "deployment/link/slo" not in str(e.value)


def test_rate_on_a_one_request_trace_names_the_file_and_key(tmp_path):
    trace = _one_request_trace(tmp_path)
    d = _scenario("mooncake-conversation")
    d["workload"]["trace"] = {"path": str(trace), "format": "mooncake", "rate": 4.4}
    d["policy"], d["threshold_tokens"] = "local-only", 0
    sc = load_scenario(_write(tmp_path, d))
    with pytest.raises(PrfaasInputError) as e:
        sc.workload(0)
    msg = str(e.value)
    assert e.value.where == f"{tmp_path / 's.yaml'}: workload.trace.rate", msg
    assert str(trace) in msg and "1 request" in msg


@pytest.mark.parametrize("load", [load_scenario, load_profile])
def test_integer_too_long_to_parse_is_invalid_yaml(tmp_path, load):
    p = tmp_path / "big.yaml"
    p.write_text("name: " + "9" * 5000 + "\n")
    with pytest.raises(PrfaasInputError, match=r"big\.yaml: invalid YAML"):
        load(p)


def test_a_number_yaml_read_as_a_string_gets_its_fix(tmp_path):
    # YAML 1.1 reads 1e-3 (no decimal point) as a string: profiles, scenarios and training
    # configs all say how to write it
    from agents.train import load_hyperparams

    prof = _profile()
    prof["model"]["kv_per_token_mib"] = "1e-3"
    with pytest.raises(PrfaasInputError, match=r"kv_per_token_mib: .*write 1\.0e-3\)"):
        load_profile(_write(tmp_path, prof, "p.yaml"))
    sc = _scenario()
    sc["slo"] = {"ttft_s": "3E1"}
    with pytest.raises(PrfaasInputError, match=r"slo\.ttft_s: .*write 3\.0e\+1\)"):
        load_scenario(_write(tmp_path, sc, "s.yaml"))
    cfg = _write(tmp_path, {"PrfaasRoute-v0": {"learning_rate": "3e-4"}}, "c.yaml")
    with pytest.raises(PrfaasInputError, match=r"learning_rate: .*write 3\.0e-4\)"):
        load_hyperparams("ppo", "bursty-fluctuating", cfg)
    sc["slo"] = {"ttft_s": "1.0e1"}  # YAML 1.1 needs the exponent's sign too
    with pytest.raises(PrfaasInputError, match=r"slo\.ttft_s: .*write 1\.0e\+1\)"):
        load_scenario(_write(tmp_path, sc, "s.yaml"))
    sc["slo"] = {"ttft_s": "30"}  # quoted: the fix is the quotes, not a decimal point
    with pytest.raises(PrfaasInputError, match=r"slo\.ttft_s: .*write the number without "
                                               r"quotes\)") as e:
        load_scenario(_write(tmp_path, sc, "s.yaml"))
    assert "decimal point" not in str(e.value)
    sc["slo"] = {"ttft_s": "soon"}  # not a number at all: no hint
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(_write(tmp_path, sc, "s.yaml"))
    assert "decimal point" not in str(e.value)


# ------------------------------------------------------------- repeated keys in a mapping

def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    # YAML keeps the last of two equal keys without a word: the first deployment section
    # would be ignored
    from agents.train import load_hyperparams

    text = (scenario_dir() / "paper-case-study.yaml").read_text()
    p = tmp_path / "twice.yaml"
    p.write_text(text + "deployment: {n_prfaas: 1}\n")
    first = next(i for i, line in enumerate(text.splitlines(), 1)
                 if line.startswith("deployment:"))
    last = len(text.splitlines()) + 1
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(p)
    assert str(e.value).startswith(f"{p}:{last}: key 'deployment' is given twice "
                                   f"(first on line {first})")
    prof = tmp_path / "p.yaml"
    prof.write_text("model:\n  name: a\n  name: b\n")
    with pytest.raises(PrfaasInputError, match=r"p\.yaml:3: key 'name' is given twice \(first on "
                                               r"line 2\)"):
        load_profile(prof)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("PrfaasRoute-v0:\n  n_steps: 64\n  gamma: 0.9\n  n_steps: 128\n")
    with pytest.raises(PrfaasInputError, match=r"c\.yaml:4: key 'n_steps' is given twice"):
        load_hyperparams("ppo", "bursty-fluctuating", cfg)


def test_a_merge_key_may_still_be_overridden(tmp_path):
    from agents.train import load_hyperparams

    cfg = tmp_path / "c.yaml"
    cfg.write_text("base: &b {n_steps: 64, gamma: 0.9}\n"
                   "PrfaasRoute-v0:\n  <<: *b\n  gamma: 0.95\n")
    hp = load_hyperparams("ppo", "bursty-fluctuating", cfg)
    assert hp["n_steps"] == 64 and hp["gamma"] == 0.95


@pytest.mark.parametrize("text", [
    "base: &base {x: 1}\nb:\n  <<: &A\n    <<: *base\n    x: 2\nc: *A\n",  # an anchor in a merge
    "b: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n",
    "a: &a {x: 1}\nb: &b {y: 1}\nc:\n  <<: [*a, *b]\n  x: 3\n",
])
def test_valid_yaml_with_merges_reads_as_plain_yaml_does(text):
    from prfaas_gym.config_file import parse_config_yaml

    assert parse_config_yaml(text, "f.yaml") == yaml.safe_load(text)


@pytest.mark.parametrize("text, key", [
    ("&k a: 1\n*k : 2\n", "a"),  # the same key through an alias
    ("c:\n  <<: {x: 1, x: 2}\n", "x"),  # inside a merged mapping
    ("a:\n  b: 1\n  c:\n    d: 1\n    d: 2\n", "d"),
])
def test_repeated_keys_in_any_mapping_are_refused(text, key):
    from prfaas_gym.config_file import parse_config_yaml

    with pytest.raises(PrfaasInputError, match=f"key '{key}' is given twice"):
        parse_config_yaml(text, "f.yaml")


def test_a_scalar_tagged_as_a_mapping_keeps_yamls_own_error():
    from prfaas_gym.config_file import parse_config_yaml

    with pytest.raises(PrfaasInputError, match="expected a mapping node, but found scalar"):
        parse_config_yaml("a: !!map ab\n", "f.yaml")


@pytest.mark.parametrize("text, expected", [
    ("PrfaasRoute-v0:\n  n_steps: [1, 2\n  gamma: 0.9\n",
     "f.yaml: invalid YAML: expected ',' or ']', but got ':' at line 3, column 8 (while "
     "parsing a flow sequence at line 2, column 12)"),
    ('a: "x\n', "f.yaml: invalid YAML: found unexpected end of stream at line 2, column 1 "
     "(while scanning a quoted scalar at line 1, column 4)"),
    ("a: 1\nbc: \x07\n", "f.yaml: invalid YAML: character U+0007 is not allowed "
     "(special characters are not allowed) at line 2, column 5"),
])
def test_invalid_yaml_is_one_line_naming_the_line_and_column(text, expected):
    """PyYAML's own text spans lines, quotes the source and calls the file "<unicode
    string>"; the error a user gets is one line with the file, line and column."""
    from prfaas_gym.config_file import parse_config_yaml

    with pytest.raises(PrfaasInputError) as ei:
        parse_config_yaml(text, "f.yaml")
    assert str(ei.value) == expected


def test_training_config_unreadable_files_are_clear_errors(tmp_path):
    from agents.train import load_hyperparams

    for path, msg in [(tmp_path / "none.yaml", "training config file not found"),
                      (tmp_path, "is a directory, not a training config YAML file")]:
        with pytest.raises(PrfaasInputError, match=msg):
            load_hyperparams("ppo", "bursty-fluctuating", path)
    big = tmp_path / "big.yaml"
    big.write_text("PrfaasRoute-v0: {n_steps: " + "9" * 5000 + "}\n")
    with pytest.raises(PrfaasInputError, match=r"big\.yaml: invalid YAML"):
        load_hyperparams("ppo", "bursty-fluctuating", big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x89PNG\x00\xff")
    with pytest.raises(PrfaasInputError, match=r"bin\.yaml:1: .*not UTF-8"):
        load_hyperparams("ppo", "bursty-fluctuating", binary)


# ------------------------------------------------------ a shipped name shadowed by a folder

def test_a_folder_named_like_a_shipped_scenario_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper-case-study").mkdir()
    assert load_scenario("paper-case-study").name == "paper-case-study"
    assert load_profile("paper-case-study").deployment.n_prfaas > 0
    (tmp_path / "no-such-scenario").mkdir()  # a folder that is no shipped name: still an error
    with pytest.raises(PrfaasInputError, match="is a directory"):
        load_scenario("no-such-scenario")
    # only a bare name is looked up among the shipped ones: a folder given by its path, with a
    # YAML file of the same name beside it, is still a folder
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine.yaml").write_text((scenario_dir() / "paper-case-study.yaml").read_text())
    for load in (load_scenario, load_profile):
        with pytest.raises(PrfaasInputError, match="is a directory"):
            load(tmp_path / "mine")
    with pytest.raises(PrfaasInputError, match="unknown profile preset"):
        load_profile("somewhere/paper-case-study")


# ------------------------------------------------- sizes that would exhaust the machine

@pytest.mark.parametrize("section,key,value", [
    ("deployment", "n_prfaas", 10_001),
    ("deployment", "n_decode", 400_000_000),
    ("randomize", "n_prfaas", [1, 10_001]),
    ("randomize", "n_local", [2, 10**9]),
])
def test_instance_counts_above_the_simulators_limit_are_refused(tmp_path, section, key, value):
    # 4e8 instances took 22 GB in a minute before any error
    d = _scenario("bursty-fluctuating")
    d.setdefault(section, {})[key] = value
    with pytest.raises(PrfaasInputError, match=rf"{section}.*{key}.*<= 10,000"):
        load_scenario(_write(tmp_path, d))
    d[section][key] = 10_000 if section == "deployment" else [value[0], 10_000]
    load_scenario(_write(tmp_path, d))  # the limit itself is fine


def test_synthetic_request_counts_above_the_limit_are_refused_before_generating(tmp_path):
    from prfaas_gym import synthetic
    from prfaas_gym.env import PrfaasRouteEnv

    d = _scenario("bursty-fluctuating")
    d["workload"]["requests"] = 10**9
    with pytest.raises(PrfaasInputError, match=r"workload\.requests: must be <= 1,000,000"):
        load_scenario(_write(tmp_path, d))
    sc = load_scenario("bursty-fluctuating")
    with pytest.raises(PrfaasInputError, match="at most 1,000,000 synthetic requests"):
        sc.workload(0, n=10**9)
    with pytest.raises(PrfaasInputError, match=r"^episode_requests: must be <= 31,250"):
        PrfaasRouteEnv(sc, episode_requests=10**6)
    d = _scenario("bursty-fluctuating")
    d["env"]["episode_requests"] = 40_000
    with pytest.raises(PrfaasInputError, match=r"s\.yaml env\.episode_requests: must be <= 31,"):
        PrfaasRouteEnv(load_scenario(_write(tmp_path, d)))
    # a replayed trace is not generated: no such limit
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 500 * i, "input_length": 1000,
                                         "output_length": 10, "hash_ids": []}) + "\n"
                             for i in range(200)))
    assert PrfaasRouteEnv(sc.with_trace(str(trace)), episode_requests=10**6).episode_requests \
        == 10**6
    assert synthetic.MAX_REQUESTS == 1_000_000


@pytest.mark.parametrize("section, key", [
    (("bandwidth",), "mean_gbps"),
    (("workload", "synthetic", "arrivals"), "rate_on"),
    (("workload", "synthetic", "prompt"), "high"),
])
def test_an_integer_too_large_for_a_float_is_named(tmp_path, section, key):
    # YAML reads 400 digits as an int that no float holds: an OverflowError traceback before
    d = _scenario("bursty-fluctuating")
    node = d
    for part in section:
        node = node[part]
    node[key] = 10**400
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(_write(tmp_path, d))
    assert f"{'.'.join(section)}.{key}: " in str(e.value) and "finite" in str(e.value)


# ------------------------------------------------ wrong types and sizes that ran away

@pytest.mark.parametrize("path, value", [
    (("policy",), ["conductor"]),                                  # was: unhashable type
    (("workload", "synthetic", "arrivals", "process"), ["mmpp"]),
    (("workload", "synthetic", "prompt", "dist"), {"a": 1}),
])
def test_a_list_or_mapping_where_a_name_is_meant_is_named(tmp_path, path, value):
    d = _scenario("bursty-fluctuating")
    node = d
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(_write(tmp_path, d))
    assert f"{'.'.join(path)}" in str(e.value), str(e.value)


@pytest.mark.parametrize("value", [["a.jsonl"], 3, None, ""])
def test_a_trace_path_that_is_not_a_string_is_named(tmp_path, value):
    d = _scenario("mooncake-conversation")
    d["workload"]["trace"]["path"] = value
    with pytest.raises(PrfaasInputError, match=r"workload\.trace(\.path)?: "):
        load_scenario(_write(tmp_path, d))


@pytest.mark.parametrize("path, value, needle", [
    # each of these loaded, then exhausted memory or never finished on the first run
    (("workload", "synthetic", "prefix", "system_prompts", "tokens"), 10**9, "<= 1e+07"),
    (("workload", "synthetic", "prefix", "system_prompts", "count"), 10**9, "<= 100000"),
    (("workload", "synthetic", "prefix", "sessions", "turns_mean"), 10**9, "<= 10000"),
    (("workload", "synthetic", "arrivals", "rate_on"), 1e9, "requests per on/off cycle"),
    (("workload", "synthetic", "arrivals", "x"),  # a trillion on/off cycles for 20 requests
     {"process": "mmpp", "rate_on": 1000, "rate_off": 1000, "mean_on_s": 1e-12,
      "mean_off_s": 1e-12},
     "cycles; at most"),
    (("bandwidth", "variants"), 10**9, "segments in all"),
    (("bandwidth", "duration_s"), 10**12, "bandwidth: duration_s / dt_s is 1e+12"),
    (("bandwidth", "drops", "rate_per_s"), 10**6, "must be <= 1000, got 1e+06"),
    (("workload", "synthetic", "prefix", "sessions", "think_time_s"), 10**5, "<= 86400"),
    (("workload", "synthetic", "prefix", "sessions", "warmup_s"), 10**8, "warm-up of 1e+08 s"),
])
def test_sizes_that_would_exhaust_memory_are_refused_at_load(tmp_path, path, value, needle):
    d = _scenario("bursty-fluctuating")
    node = d
    for part in path[:-2]:
        node = node[part]
    if path[-1] == "x":
        node[path[-2]] = value
    else:
        node[path[-2]][path[-1]] = value
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(_write(tmp_path, d))
    msg = str(e.value)
    assert needle in msg and ".".join(path[:-1]) in msg, msg


def test_a_rate_that_stretches_a_workload_past_the_span_limit_is_refused(tmp_path):
    sc = load_scenario("bursty-fluctuating")
    with pytest.raises(PrfaasInputError, match="a workload may span"):
        sc.workload(0, n=20, rate=1e-20)  # the simulator ticked through 2e21 s: a hang
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 100,
                                         "output_length": 10, "hash_ids": []}) + "\n"
                             for i in range(3)))
    with pytest.raises(PrfaasInputError, match="would stretch it over"):
        sc.with_trace(str(trace)).workload(0, rate=1e-20)


def test_a_drawn_prompt_beyond_the_token_limit_is_named(tmp_path):
    d = _scenario("bursty-fluctuating")
    d["workload"]["synthetic"].pop("sessions", None)
    d["workload"]["synthetic"]["prompt"] = {"dist": "constant", "value": 10**12}
    with pytest.raises(PrfaasInputError) as e:  # block hashes for 2e9 blocks: MemoryError
        load_scenario(_write(tmp_path, d)).workload(0, n=20)
    assert "workload.synthetic.prompt" in str(e.value) and "10,000,000" in str(e.value)


@pytest.mark.parametrize("line, needle", [
    ({"timestamp": 0, "input_length": 10**12, "output_length": 10, "hash_ids": []},
     "input_length must be <= 10,000,000 tokens"),
    ("[" * 100_000, "nested too deeply"),
])
def test_trace_lines_beyond_the_limits_are_named(tmp_path, line, needle):
    from prfaas_gym.workload import load_trace

    p = tmp_path / "t.jsonl"
    p.write_text((line if isinstance(line, str) else json.dumps(line)) + "\n")
    with pytest.raises(PrfaasInputError) as e:
        load_trace(p, "mooncake")
    assert needle in str(e.value) and f"{p}:1" in str(e.value)


@pytest.mark.parametrize("fmt", ["vidur", None])
@pytest.mark.parametrize("first", ['arrived_at,"num_prefill_tokens,num_decode_tokens',
                                   'num_prefill_tokens,"' + "x" * 140_000])
def test_a_csv_header_with_an_unclosed_quote_is_named(tmp_path, fmt, first):
    from prfaas_gym.workload import load_trace, read_lengths

    p = tmp_path / "t.csv"
    p.write_text(first + "\n" + "x" * 140_000 + "\n")  # was: _csv.Error, field limit
    for read in (load_trace, read_lengths):
        with pytest.raises(PrfaasInputError) as e:
            read(p, fmt)
        assert f"{p}:1" in str(e.value)


def test_a_scenario_that_is_not_a_mapping_is_named_once(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n")
    with pytest.raises(PrfaasInputError) as e:
        load_scenario(p)
    assert str(e.value) == f"{p}: expected a mapping, got list"  # was "list.yaml:: ..."
