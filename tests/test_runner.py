"""The runner end to end on a tiny local pair: schema, identities, batching, resume, errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from harness.analysis.results import ResultSet, load_result_file
from harness.cli.run import main as cli_main
from harness.conditions import CONDITIONS
from harness.errors import HarnessError
from harness.protocol import load_protocol
from harness.run.runner import run_protocol
from harness.spec.jobs import jobs
from tests.helpers import ARTIFACT, FINAL, STRICT, needs_artifact
from tests.model_fixtures import (
    EVAL_ROWS,
    build_char_tokenizer,
)

SEEDS = (42, 123)  # the seeds of the tiny_protocol fixture (tests/conftest.py)
N_FILES = 3 + 6 * len(SEEDS) + len(SEEDS)  # deterministic + seeded primary + strict


@pytest.fixture(scope="module")
def results(tiny_protocol, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    run_protocol(str(tiny_protocol), out, progress=False)
    return out


def _preds(path: Path) -> list[str]:
    return [r["prediction"] for r in load_result_file(path).per_sample]


def test_a_run_writes_every_planned_file_in_the_schema(results, tiny_protocol) -> None:
    files = sorted(results.glob("*.json"))
    assert len(files) == N_FILES
    rs = ResultSet.from_dirs(results)
    assert not rs.duplicates
    proto = load_protocol(tiny_protocol)
    for f in rs:
        strict = f.condition == "shuffled_translation_strict_matched"
        assert f.n == (2 if strict else len(EVAL_ROWS))
        assert f.raw["provenance"]["protocol_hash"] == proto.hash
        assert f.raw["provenance"]["tokenizer"].endswith("tok")
        assert f.config["generation"] == proto.decoding.generation_config()
        assert f.diagnostics["token_mismatch_count"] == 0
        assert (f.seed is None) == CONDITIONS[f.condition].deterministic
        if CONDITIONS[f.condition].uses_translator:
            assert {"normalized_r2", "normalized_cosine"} <= set(f.raw["translator"])
            assert (results / f.raw["checkpoint"]).is_file()


def test_self_injection_is_token_identical_to_no_injection(results) -> None:
    base = _preds(results / "h1_no_inject_fwd_deterministic.json")
    assert _preds(results / "h1_b_to_b_self_inject_fwd_deterministic.json") == base
    self_inj = load_result_file(results / "h1_b_to_b_self_inject_fwd_deterministic.json")
    for r in self_inj.per_sample:
        assert r["translated_norm_mean"] == pytest.approx(r["b_hidden_norm_mean"], rel=1e-5)
        assert r["injected_norm_mean"] == pytest.approx(r["b_hidden_norm_mean"], rel=1e-5)


def test_norm_diagnostics_follow_each_conditions_definition(results) -> None:
    scale = load_result_file(results / "h1_scale_corrected_fwd_seed42_alpha1p0.json")
    rand = load_result_file(results / "h1_same_norm_random_fwd_seed42.json")
    add = load_result_file(results / "h1_additive_fwd_seed42.json")
    rep = load_result_file(results / "h1_replace_fwd_seed42.json")
    for f in (scale, rand):
        for r in f.per_sample:
            assert r["injected_norm_mean"] == pytest.approx(r["b_hidden_norm_mean"], rel=1e-4)
    for r, q in zip(rep.per_sample, scale.per_sample, strict=True):
        assert r["injected_norm_mean"] == pytest.approx(r["translated_norm_mean"], rel=1e-4)
        assert r["translated_norm_mean"] == pytest.approx(q["translated_norm_mean"], rel=1e-6)
    for r in add.per_sample:
        assert r["injected_norm_mean"] < 0.05 * r["translated_norm_mean"] + 1e-6


def test_shuffled_controls_pair_within_length_buckets(results) -> None:
    full = load_result_file(results / "h1_shuffled_translation_fwd_seed42_alpha1p0.json")
    strict = load_result_file(
        results / "h1_shuffled_translation_strict_matched_fwd_seed42_alpha1p0.json"
    )
    lengths = {r["idx"]: r["prompt_len_b"] for r in full.per_sample}
    n_fallback = sum(r["shuffle_self_fallback"] for r in full.per_sample)
    assert full.diagnostics["shuffle_self_fallback_count"] == n_fallback
    assert strict.diagnostics["shuffle_self_fallback_count"] == 0
    assert strict.injection["strict_matched_subset"] is True
    assert strict.injection["shuffle_excluded_singleton_count"] == n_fallback
    assert strict.n == len(EVAL_ROWS) - n_fallback
    for r in strict.per_sample:
        assert r["shuffle_donor_idx"] != r["idx"]
        assert lengths[r["shuffle_donor_idx"]] == lengths[r["idx"]]


@needs_artifact
def test_files_carry_exactly_the_artifacts_fields(results) -> None:
    """Every per_sample, injection and diagnostics key the artifact writes, and no other."""
    optional = {"source_eval_index", "source_component_file"}  # eval-row provenance fields
    for ours in sorted(results.glob("*.json")):
        name = ours.name.replace("seed123", "seed42")
        theirs = (FINAL / name) if (FINAL / name).is_file() else (STRICT / name)
        if not theirs.is_file():
            continue
        a, b = json.loads(ours.read_text()), json.loads(theirs.read_text())
        assert set(b) <= set(a), ours.name
        assert set(a) - set(b) <= {"provenance", "translator"}, ours.name
        assert set(a["config"]) == set(b["config"]), ours.name
        for key in ("models", "injection", "metrics", "diagnostics"):
            assert list(a[key]) == list(b[key]), (ours.name, key)
        ka = [k for k in a["per_sample"][0] if k not in optional]
        kb = [k for k in b["per_sample"][0] if k not in optional]
        assert ka == kb, ours.name


def test_batched_generation_equals_batch_size_one_for_every_condition(
    results, tiny_protocol, tmp_path
) -> None:
    run_protocol(str(tiny_protocol), tmp_path, batch_size=1, progress=False)
    for ours in sorted(results.glob("*.json")):
        assert _preds(tmp_path / ours.name) == _preds(ours), ours.name


def test_resume_skips_existing_files(results, tiny_protocol) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    t0 = time.perf_counter()
    paths = run_protocol(str(tiny_protocol), results, progress=False)
    assert time.perf_counter() - t0 < 2  # nothing to do: no model is even loaded
    assert {p.name for p in paths} == set(before)
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")} == before


def test_resume_refuses_files_written_by_another_run(results, tiny_protocol) -> None:
    with pytest.raises(HarnessError, match="written by another run"):
        run_protocol(str(tiny_protocol), results, limit=3, progress=False)


def test_cli_runs_selected_conditions_and_reverse_direction(tiny_protocol, tmp_path) -> None:
    code = cli_main(
        [
            "--protocol",
            str(tiny_protocol),
            "--out",
            str(tmp_path),
            "--limit",
            "3",
            "--conditions",
            "no_inject,zero_replacement",
            "--directions",
            "fwd",
            "rev",
            "--no-progress",
        ]
    )
    assert code == 0
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == [
        "h1_no_inject_fwd_deterministic.json",
        "h1_no_inject_rev_deterministic.json",
        "h1_zero_replacement_fwd_deterministic.json",
        "h1_zero_replacement_rev_deterministic.json",
    ]
    rev = load_result_file(tmp_path / "h1_zero_replacement_rev_deterministic.json")
    assert rev.n == 3 and rev.models["model_b"] == "sender"
    assert rev.models["layer_b"] == "gpt_neox.layers.2"
    assert rev.diagnostics["mean_injected_norm"] == 0.0


def _own_tokenizer_protocol(tiny_protocol: Path, tmp_path: Path, *, reverse: bool) -> Path:
    """The tiny protocol with no tokenizer named: each model folder carries its own."""
    import shutil

    src = tiny_protocol.parent
    for name in ("sender", "receiver", "eval.jsonl", "train.jsonl"):
        copy = shutil.copytree if (src / name).is_dir() else shutil.copy
        copy(src / name, tmp_path / name)
    build_char_tokenizer(tmp_path / "sender", reverse=reverse)
    build_char_tokenizer(tmp_path / "receiver")
    text = tiny_protocol.read_text(encoding="utf-8").replace('tokenizer = "tok"', 'tokenizer = ""')
    path = tmp_path / "own.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_each_model_may_read_with_its_own_identical_tokenizer(tiny_protocol, tmp_path) -> None:
    proto = _own_tokenizer_protocol(tiny_protocol, tmp_path, reverse=False)
    paths = run_protocol(
        str(proto), tmp_path / "o", conditions=["b_to_b_self_inject"], limit=2, progress=False
    )
    prov = load_result_file(paths[0]).raw["provenance"]
    assert prov["tokenizer"].endswith("receiver") and prov["sender_tokenizer"].endswith("sender")


def test_differing_token_ids_refuse_sequence_level_injection(tiny_protocol, tmp_path) -> None:
    proto = _own_tokenizer_protocol(tiny_protocol, tmp_path, reverse=True)
    out = tmp_path / "o"
    run_protocol(str(proto), out, conditions=["no_inject", "nl_relay"], limit=2, progress=False)
    with pytest.raises(HarnessError, match="sample t00: sender and receiver token ids differ"):
        run_protocol(str(proto), out, conditions=["replace"], limit=2, progress=False)


def test_plan_counts_the_papers_grid() -> None:
    proto = load_protocol("paper")
    assert len(jobs(proto, ("primary",))) == 21
    assert len(jobs(proto)) == 24
    assert len(jobs(proto, ("primary", "strict", "appendix"))) == 25


def test_token_mismatch_refuses_sequence_level_conditions() -> None:
    from harness.analysis.evalset import EvalRow
    from harness.run.runner import check_token_match

    rows = [EvalRow("a", "c", "q", "x"), EvalRow("b", "c", "q", "y")]
    with pytest.raises(HarnessError, match="sample b: sender and receiver token ids differ"):
        check_token_match(rows, [[1, 2], [3, 4]], [[1, 2], [3, 5]])


@needs_artifact
def test_paper_protocol_without_weights_fails_fast_with_how_to(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HARNESS_ALLOW_DOWNLOAD", raising=False)
    t0 = time.perf_counter()
    code = cli_main(
        [
            "--protocol",
            "paper",
            "--out",
            str(tmp_path / "o"),
            "--limit",
            "2",
            "--init",
            "pretrained",
            "--no-progress",
            "--artifact",
            str(ARTIFACT),
        ]
    )
    assert code == 2 and time.perf_counter() - t0 < 60
    with pytest.raises(HarnessError, match=r"HF_HOME.*local model directory"):
        run_protocol(
            "paper",
            tmp_path / "o",
            limit=2,
            init="pretrained",
            progress=False,
            artifact=str(ARTIFACT),
        )
    assert not list((tmp_path / "o").glob("*.json")) if (tmp_path / "o").exists() else True


@needs_artifact
@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("HARNESS_RUN_SLOW") != "1",
    reason="random-init Pythia run takes minutes on CPU; set HARNESS_RUN_SLOW=1",
)
def test_paper_protocol_random_init_writes_the_full_grid(tmp_path) -> None:
    paths = run_protocol(
        "paper",
        tmp_path,
        init="random",
        limit=8,
        train_limit=16,
        progress=False,
        artifact=str(ARTIFACT),
    )
    assert len(paths) == 24 and all(p.is_file() for p in paths)
    for p in paths:
        f = load_result_file(p)
        assert f.n <= 8 and (f.n == 8 or "strict" in f.condition)


def test_threads_apply_to_the_run_only(tiny_protocol, tmp_path, monkeypatch) -> None:
    import harness.run.runner as runner_mod

    before = torch.get_num_threads()
    seen: list[int] = []
    original = runner_mod.load_pair

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "load_pair", spy)
    run_protocol(
        str(tiny_protocol),
        tmp_path,
        conditions=["no_inject"],
        limit=2,
        progress=False,
        threads=before + 1,
    )
    assert seen == [before + 1] and torch.get_num_threads() == before
    with pytest.raises(HarnessError, match="threads must be at least 1"):
        run_protocol(str(tiny_protocol), tmp_path / "x", limit=2, progress=False, threads=0)


def test_extension_conditions_run_by_default_and_leave_with_no_extension(
    tiny_protocol, tmp_path, monkeypatch
) -> None:
    text = Path(tiny_protocol).read_text()
    # relative paths in the tiny protocol resolve against its own folder
    path = Path(tiny_protocol).with_name("ext.toml")
    path.write_text(
        text.replace(
            "extension_conditions = []",
            'extension_conditions = ["causal_replace", "causal_additive"]',
        )
    )
    proto = load_protocol(path)
    names = {j.condition for j in jobs(proto, ("primary", "strict", "extension"))}
    assert {"causal_replace", "causal_additive"} <= names
    assert not {"causal_replace", "causal_additive"} & {j.condition for j in jobs(proto)}
    seen = {}

    def fake_run(protocol, out, options=None, **kw):
        import dataclasses

        seen.update(dataclasses.asdict(options) if options else {}, **kw)
        return []

    monkeypatch.setattr("harness.run.runner.run_protocol", fake_run)
    for flags, want in (([], True), (["--no-extension"], False)):
        assert cli_main(["--protocol", str(path), "--out", str(tmp_path / "o"), *flags]) == 0
        assert seen["include_extension"] is want
        assert seen["share_jobs"] is True  # concurrent `run`s on one folder split the grid


def test_a_condition_registered_in_one_place_runs_end_to_end(
    tiny_protocol, tmp_path, request: pytest.FixtureRequest
) -> None:
    """The README's example: one registration (plus the run's condition list) adds a condition
    that the runner executes and validation, tables and the record layout pick up. The new
    condition is additive *per position* (no ``last_broadcast``), so each position receives
    its own translated vector: its recorded added norm is exactly ``scale`` times its
    translated norm, which the broadcast additive's is not."""
    from harness import conditions
    from harness.analysis.tables import summarize
    from harness.conditions import Condition, InjectionPlan

    cond = Condition(
        name="additive_per_position",
        group="extension",
        deterministic=False,
        label="additive (per position)",
        plan=InjectionPlan("translated", "additive", translator="linear"),
        injection_record=conditions._translated,
        roles=("transfer",),
    )
    conditions.register(cond)
    request.addfinalizer(lambda: conditions.CONDITIONS.pop(cond.name))
    out = tmp_path / "out"
    paths = run_protocol(
        str(tiny_protocol),
        out,
        conditions=["additive_per_position", "additive"],
        seeds=[42],
        progress=False,
    )
    per_pos, broadcast = (load_result_file(p) for p in paths)
    assert per_pos.condition == "additive_per_position" and per_pos.n == len(EVAL_ROWS)
    assert per_pos.injection["mode"] == "additive" and per_pos.injection["scale"] == 0.01
    assert per_pos.models["layer_a"] and per_pos.raw["translator"]["normalized_cosine"] is not None

    def ratio(f) -> list[float]:  # added norm / translated norm, per sample
        return [r["injected_norm_mean"] / r["translated_norm_mean"] for r in f.per_sample]

    assert ratio(per_pos) == pytest.approx([0.01] * per_pos.n, rel=1e-5)
    assert ratio(broadcast) != pytest.approx([0.01] * broadcast.n, rel=1e-3)
    assert "additive_per_position" in conditions.with_role("transfer")
    (row,) = summarize(ResultSet([per_pos]))
    assert row.condition == "additive_per_position"
    with pytest.raises(ValueError, match="already registered"):
        conditions.register(cond)


def test_run_options_are_one_dataclass_and_keywords_override_them(tmp_path) -> None:
    from harness.run.runner import RunOptions

    with pytest.raises(HarnessError, match="unexpected keyword argument 'seedz'"):
        run_protocol("mini", tmp_path / "o", RunOptions(progress=False), seedz=[1])
    assert RunOptions().include_strict and not RunOptions().share_jobs


def test_an_automatic_batch_size_fits_a_fake_memory_limit_and_changes_no_prediction(
    results, tiny_protocol, tmp_path, monkeypatch
) -> None:
    """``batch_size="auto"`` under a fake device memory limit that fits exactly 3 rows of the
    tiny pair: the run uses batch 3 and writes the predictions of the protocol's batch
    (which equal batch size 1, tested above)."""
    from harness.model import devices
    from harness.model.models import load_pair

    proto = load_protocol(str(tiny_protocol))
    pair = load_pair(proto)
    dec = proto.decoding
    per_row = max(
        devices.row_bytes(
            m.config,
            prompt_len=proto.prompt.max_length,
            new_tokens=max(dec.max_new_tokens, dec.relay_max_new_tokens),
        )
        for m in (pair.sender, pair.receiver)
    )
    assert proto.run.batch_size != 3
    monkeypatch.setattr(devices, "device_free_bytes", lambda device: int(3.5 * per_row / 0.7))
    run_protocol(str(tiny_protocol), tmp_path, batch_size="auto", progress=False)
    for ours in sorted(results.glob("*.json")):
        again = tmp_path / ours.name
        assert json.loads(again.read_text())["provenance"]["batch_size"] == 3
        assert _preds(again) == _preds(ours), ours.name
    with pytest.raises(HarnessError, match="positive integer or 'auto'"):
        run_protocol(str(tiny_protocol), tmp_path / "bad", batch_size="max", progress=False)


def test_the_worked_example_mean_ablation_runs_end_to_end_and_validates(
    tiny_protocol, results, tmp_path
) -> None:
    """docs/architecture.md's worked example, a new state source added in two files
    (conditions.py, model/plans.py): mean ablation writes a schema-valid file whose every
    row injected the same vector, the mean of the receiver's own block outputs (so every
    injected norm equals one number), and the receiver's answers change."""
    from harness.analysis.validate import validate

    out = tmp_path / "ablate"
    (path,) = run_protocol(
        str(tiny_protocol), out, conditions=["mean_ablation"], seeds=[42], progress=False
    )
    f = load_result_file(path)
    assert path.name == "h1_mean_ablation_fwd_deterministic.json" and f.seed is None
    assert f.injection["source"] == "receiver_mean" and f.injection["mode"] == "replace"
    assert f.models["model_a"] == f.models["model_b"]
    norms = [r["injected_norm_mean"] for r in f.per_sample]
    assert max(norms) - min(norms) <= 1e-4 * max(norms) and norms[0] > 0
    native = [r["b_hidden_norm_mean"] for r in f.per_sample]
    assert all(n < b for n, b in zip(norms, native, strict=True))  # a mean is shorter
    plain = _preds(results / "h1_no_inject_fwd_deterministic.json")
    assert [r["prediction"] for r in f.per_sample] != plain
    rep = validate([results, out], load_protocol(tiny_protocol))  # the grid beside it
    assert rep.blocking_passed, [c for c in rep.checks if not c.passed]


def test_explicit_layers_pick_the_blocks_and_leave_default_protocols_unchanged(
    tmp_path,
) -> None:
    """``models.sender_layer`` / ``receiver_layer`` (a layer-pair sweep's axes) choose the
    capture and injection blocks over ``relative_depth`` and are recorded in the file; at -1
    they change neither the protocol hash nor the file's keys; a block the model lacks is a
    one-line error naming the key, before any generation."""
    import hashlib

    from tests.model_fixtures import build_tiny_experiment, edit_protocol

    path = build_tiny_experiment(tmp_path / "exp", seeds=(42,))
    base = load_protocol(path)
    unset = base.to_dict()
    for key in ("sender_layer", "receiver_layer"):
        assert unset["models"].pop(key) == -1
    canon = json.dumps(unset, sort_keys=True, separators=(",", ":"))
    assert base.hash == hashlib.sha256(canon.encode()).hexdigest()[:16]
    explicit = tmp_path / "exp" / "explicit.toml"
    explicit.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    edit_protocol(explicit, {"models": {"sender_layer": 0, "receiver_layer": 4}})
    proto = load_protocol(explicit)
    assert proto.hash != base.hash
    assert (proto.models.sender_layer, proto.models.receiver_layer) == (0, 4)
    kw = dict(conditions=["no_inject", "replace"], seeds=[42], limit=2, progress=False)
    (default_file,) = [
        p for p in run_protocol(str(path), tmp_path / "a", **kw) if "_replace_" in p.name
    ]
    (explicit_file,) = [
        p for p in run_protocol(str(explicit), tmp_path / "b", **kw) if "_replace_" in p.name
    ]
    d, e = load_result_file(default_file).raw, load_result_file(explicit_file).raw
    assert "layers" not in d["config"]
    assert e["config"]["layers"] == {"sender": 0, "receiver": 4}
    # relative depth 0.67 of 3 and 6 blocks: blocks 2 and 4; explicit: 0 and 4
    assert (d["models"]["layer_a"], d["models"]["layer_b"]) == (
        "gpt_neox.layers.2",
        "gpt_neox.layers.4",
    )
    assert (e["models"]["layer_a"], e["models"]["layer_b"]) == (
        "gpt_neox.layers.0",
        "gpt_neox.layers.4",
    )
    edit_protocol(explicit, {"models": {"sender_layer": 3}})
    # a local folder: refused when the protocol loads, naming the folder's block count
    with pytest.raises(HarnessError, match=r"models\.sender_layer = 3: .*sender has 3 blocks"):
        run_protocol(str(explicit), tmp_path / "c", **kw)
    # a hub model (no config.json to read beforehand): refused when its block resolves
    from harness.model.models import resolve_block
    from tests.model_fixtures import tiny_model

    with pytest.raises(HarnessError, match=r"models\.receiver_layer = 6, but .* has 6 blocks"):
        resolve_block(tiny_model(2, hidden=48, layers=6), 0.67, 6, key="receiver_layer")
