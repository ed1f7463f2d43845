"""The claims suite is a real gate: breaking the data turns specific claims and snapshots red."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analysis.audit import label_row
from harness.analysis.metrics import score, word_boundary_contains
from tests.helpers import ARTIFACT, needs_artifact

ROOT = Path(__file__).resolve().parent.parent


def _run_claims(
    artifact: Path, tmp_path: Path, *args: str, findings: Path | None = None
) -> tuple[int, str]:
    """``pytest claims --source paper`` on ``artifact`` in a subprocess (``args``: scheduling
    and verbosity; single-process and quiet by default); the status file goes to
    ``tmp_path/status.json``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "claims",
            "--source",
            "paper",
            "-p",
            "no:cacheprovider",
            *(args or ("-p", "no:xdist", "-q")),
            "--artifact",
            str(artifact),
            "--claims-status",
            str(tmp_path / "status.json"),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "HARNESS_ARTIFACT": str(artifact),
            "HARNESS_ARTIFACT_UNVERIFIED": "1",  # an edited copy, on purpose
            **({"HARNESS_FINDINGS": str(findings)} if findings else {}),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout


@needs_artifact
@pytest.mark.slow
def test_altering_one_prediction_turns_specific_claims_and_snapshots_red(tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(ARTIFACT, copy)
    target = copy / "results" / "final" / "h1_b_to_b_self_inject_fwd_deterministic.json"
    data = json.loads(target.read_text())
    row = next(
        r for r in data["per_sample"] if r["gold"].lower() in r["prediction"].lower().split()
    )
    row["prediction"] = "I do not know."
    target.write_text(json.dumps(data))

    code, out = _run_claims(copy, tmp_path)
    failed = {
        line.split("::")[-1].split(" ")[0] for line in out.splitlines() if line.startswith("FAILED")
    }
    assert code == 1
    assert {
        "test_self_injection_exactly_matches_no_injection[paper]",
        "test_self_injection_reproduces_no_injection_predictions_verbatim[paper]",
        "test_summary_table_is_unchanged[paper]",
        "test_paired_comparisons_are_unchanged[paper]",
    } <= failed, out[-3000:]
    # Claims that do not depend on the altered file stay green.
    assert not any("replacement_is_destructive" in f for f in failed), failed


def _failed(out: str) -> set[str]:
    """Names of the failed claim and snapshot tests (``[paper]`` dropped)."""
    return {
        line.split("::")[-1].split(" ")[0].removesuffix("[paper]")
        for line in out.splitlines()
        if line.startswith("FAILED")
    }


def _edit(root: Path, name: str, change) -> None:
    """Apply ``change(data)`` to one result file of an artifact copy."""
    folder = "final_strict_controls" if "strict_matched" in name else "final"
    target = root / "results" / folder / name
    data = json.loads(target.read_text())
    change(data)
    target.write_text(json.dumps(data))


def _set(path: tuple[str, ...], value):
    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _flip_additive_gains(data) -> None:
    """Six additive rows that beat no-injection answer wrongly instead (seed 42)."""
    n = 0
    for r in data["per_sample"]:
        if n < 6 and r["gold"].lower() in r["prediction"].lower().split():
            r["prediction"] = "I do not know."
            n += 1


def _flag_one_row(data) -> None:
    data["per_sample"][7]["token_ids_match"] = False


def _drop_a_row(data) -> None:
    data["per_sample"] = data["per_sample"][:-1]


def _copy_baseline_predictions(root: Path):
    """Make a run answer exactly as no-injection does, sample by sample."""
    base = json.loads((root / "results/final/h1_no_inject_fwd_deterministic.json").read_text())
    preds = {r["sample_id"]: r["prediction"] for r in base["per_sample"]}

    def change(data):
        for r in data["per_sample"]:
            r["prediction"] = preds[r["sample_id"]]

    return change


def _answer_six_more(data) -> None:
    """Six wrong answers become verbose correct ones (the same rows in both files), after the
    rows the audit samples from this file (its first 5 legacy-only matches)."""
    seen, n = 0, 0
    for r in data["per_sample"]:
        legacy_only = r["gold"].lower() in r["prediction"].lower()
        if legacy_only:
            seen += 1
        elif seen >= 5 and n < 6:
            r["prediction"] = f"The answer is {r['gold']} here."
            n += 1
    assert n == 6


def _mention_to_noise(data) -> None:
    """The first accidental mention keeps the gold only inside a longer word (substring noise)."""
    row = next(
        r
        for r in data["per_sample"]
        if label_row(r["prediction"], r["gold"]) == "accidental_mention"
    )
    row["prediction"] = re.sub(
        re.escape(row["gold"]), row["gold"] + "ville", row["prediction"], flags=re.I
    )
    assert label_row(row["prediction"], row["gold"]) == "substring_noise"


def _self_donor(data) -> None:
    """One row records itself as its donor; the file's count is left as it was."""
    row = next(r for r in data["per_sample"] if r["shuffle_donor_idx"] != r["idx"])
    row["shuffle_donor_idx"] = row["idx"]
    row["shuffle_self_fallback"] = True


def _rows(data, n: int, keep=lambda r: True):
    """The first ``n`` rows that ``keep`` accepts, after the rows the audit samples from this
    file (its first 5 legacy-only matches), so the audit slice is left as it was."""
    seen, out = 0, []
    for r in data["per_sample"]:
        if r["gold"].lower() in r["prediction"].lower() and seen < 5:
            seen += 1
        elif seen >= 5 and len(out) < n and keep(r):
            out.append(r)
    assert len(out) == n
    return out


def _answer_more(n: int):
    """``n`` wrong answers become correct ones."""

    def change(data):
        for r in _rows(data, n, lambda r: not word_boundary_contains(r["prediction"], r["gold"])):
            r["prediction"] = f"The answer is {r['gold']}."

    return change


def _answer_fewer(n: int):
    """``n`` correct answers become wrong ones."""

    def change(data):
        for r in _rows(data, n, lambda r: word_boundary_contains(r["prediction"], r["gold"])):
            r["prediction"] = "I do not know."

    return change


def _rows_set(idx: tuple[int, ...], key: str, value):
    """Rows ``idx`` get ``key`` from ``value(row)``."""

    def change(data):
        for i in idx:
            data["per_sample"][i][key] = value(data["per_sample"][i])

    return change


def _another_gold(data) -> None:
    """Two rows carry a gold the eval does not have (rows no metric scores either way)."""
    rows = [r for r in data["per_sample"] if not any(score(r["prediction"], r["gold"]).values())]
    for r in rows[:2]:
        r["gold"] = "Zanzibar"


def _drop_flags(data) -> None:
    """Three rows were written without their token-id check."""
    for r in data["per_sample"][3:6]:
        del r["token_ids_match"]


def _long_relay(data) -> None:
    """Two relays ran past the 128-token budget (200 words)."""
    for r in data["per_sample"][:2]:
        r["relay"] = " ".join([r["relay"]] + ["and"] * 200)


def _donor_of_another_length(data) -> None:
    """Two rows take their donor from a bucket of another prompt length."""
    rows = data["per_sample"]
    movable = [r for r in rows if r["shuffle_donor_idx"] != r["idx"]][:2]
    for r in movable:
        other = next(x for x in rows if x["prompt_len_b"] != r["prompt_len_b"])
        r["shuffle_donor_idx"] = other["idx"]


def _fallback_flag_moved(data) -> None:
    """A singleton row's fallback flag is written on another row (the count unchanged)."""
    rows = data["per_sample"]
    single = next(r for r in rows if r["shuffle_donor_idx"] == r["idx"])
    other = next(r for r in rows if r["shuffle_donor_idx"] != r["idx"])
    single["shuffle_self_fallback"] = False
    other["shuffle_self_fallback"] = True


def _scale_inserted_norms(factor: float):
    """The translator's outputs are ``factor`` times as long (translated and inserted)."""

    def change(data):
        for r in data["per_sample"]:
            r["translated_norm_mean"] *= factor
            r["injected_norm_mean"] *= factor

    return change


def _seed_rows_of(name: str):
    """A change built from the copy: the edited run holds ``name``'s per-sample rows (a run
    saved under the wrong seed's name)."""

    def build(root: Path):
        return _rows_of(root, name)

    build.from_root = True  # type: ignore[attr-defined]
    return build


def _rows_of(root: Path, name: str):
    """Make a run hold another run's per-sample rows (saved under the wrong seed's name)."""
    other = json.loads((root / "results/final" / name).read_text())

    def change(data):
        data["per_sample"] = other["per_sample"]

    return change


REPLACE_FILES = [f"h1_replace_fwd_seed{s}.json" for s in (42, 123, 456)]
# (what is changed, files, change, the claims that must turn red -- and no others); a change
# given as a callable of the artifact root is built from the copy (e.g. no-injection's rows).
MUTATIONS = {
    "one seed of the full-n shuffle answers as no-injection does": (
        ["h1_shuffled_translation_fwd_seed42_alpha1p0.json"],
        _copy_baseline_predictions,
        {
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_replacement_random_and_shuffled_conditions_are_strongly_below_both_baselines",
            "test_replacement_style_injection_is_destructive_on_every_seed",
            "test_shuffled_translation_is_destructive_at_the_replacement_level",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
        },
    ),
    "same-norm random answers as no-injection does on every seed": (
        [f"h1_same_norm_random_fwd_seed{s}.json" for s in (42, 123, 456)],
        _copy_baseline_predictions,
        {
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_same_norm_random_injection_drops_word_boundary_accuracy_to_zero",
            "test_replacement_random_and_shuffled_conditions_are_strongly_below_both_baselines",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
        },
    ),
    "no-injection and self-injection answer six more questions (baseline above 10%)": (
        ["h1_no_inject_fwd_deterministic.json", "h1_b_to_b_self_inject_fwd_deterministic.json"],
        _answer_six_more,
        {
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_self_injection_and_no_injection_word_boundary_accuracy_is_0_0884",
            "test_additive_versus_no_injection_is_plus_0_0042_with_ci_minus_0_0042_to_plus_0_0126",
            "test_replacement_delta_is_minus_0_0859_versus_no_injection_and_minus_0_0808_versus_relay",
            "test_baseline_word_boundary_accuracy_is_below_10_percent",
            "test_additive_injection_has_a_small_positive_mean_versus_no_injection",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
        },
    ),
    "one audited accidental mention becomes substring noise (32/28 instead of 31/29)": (
        ["h1_best_alpha_fwd_seed42_alpha0p3.json"],
        _mention_to_noise,
        {
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_the_audit_finds_31_substring_noise_and_29_accidental_mention_cases",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
            "test_audit_counts_are_unchanged",
        },
    ),
    "a full-n shuffle row is its own donor, the file's count unchanged": (
        ["h1_shuffled_translation_fwd_seed123_alpha1p0.json"],
        _self_donor,
        {
            "test_full_n_shuffle_self_fallbacks_equal_the_number_of_singleton_buckets",
            "test_full_n_shuffle_self_fallbacks_are_exactly_the_singleton_bucket_rows",
        },
    ),
    "a strict shuffle row is its own donor, the file's count unchanged": (
        ["h1_shuffled_translation_strict_matched_fwd_seed456_alpha1p0.json"],
        _self_donor,
        {
            "test_strict_matched_shuffle_drops_singleton_buckets_and_never_falls_back_to_self",
            "test_every_shuffle_donor_has_the_rows_prompt_length",
            # the validator checks the strict invariants row by row too (blocking)
            "test_validation_with_strict_controls_passes_with_24_of_24_files",
            "test_validation_report_is_unchanged",
        },
    ),
    "receiver is pythia-1b in one file": (
        ["h1_additive_fwd_seed42.json"],
        _set(("models", "model_b"), "EleutherAI/pythia-1b"),
        {"test_every_result_file_names_the_sender_and_receiver_of_the_protocol"},
    ),
    "sender block 6, receiver block 12 in one file": (
        ["h1_replace_fwd_seed123.json"],
        lambda d: d["models"].update(layer_a="gpt_neox.layers.6", layer_b="gpt_neox.layers.12"),
        {"test_injection_sites_are_the_blocks_at_relative_depth_0_67"},
    ),
    "relative depth 0.5 in one file": (
        ["h1_replace_fwd_seed456.json"],
        _set(("config", "layer_rel"), 0.5),
        {"test_injection_sites_are_the_blocks_at_relative_depth_0_67"},
    ),
    "best alpha 0.9 in one file": (
        ["h1_best_alpha_fwd_seed42_alpha0p3.json"],
        _set(("injection", "alpha"), 0.9),
        {"test_the_best_alpha_blend_uses_the_frozen_historical_alpha_0_30"},
    ),
    "additive scale 0.02 in one file": (
        ["h1_additive_fwd_seed123.json"],
        _set(("injection", "scale"), 0.02),
        {"test_additive_injection_adds_0_01_of_the_translated_vector"},
    ),
    "one row flags a token mismatch, the file's count still says zero": (
        ["h1_scale_corrected_fwd_seed42_alpha1p0.json"],
        _flag_one_row,
        {
            "test_sequence_and_token_mismatch_counts_are_zero",
            "test_main_grid_validation_passes_with_every_expected_file",
            "test_validation_with_strict_controls_passes_with_24_of_24_files",
            "test_validation_report_is_unchanged",
        },
    ),
    "an appendix reverse-direction file loses a row": (
        ["h1_same_norm_random_rev_seed42.json"],
        _drop_a_row,
        {
            "test_every_result_file_holds_clean_eval_ids_and_golds",
            "test_appendix_control_files_have_full_rows_the_eval_hash_and_no_mismatches",
            "test_summary_table_is_unchanged",
        },
    ),
    "six additive gains over no-injection become losses": (
        ["h1_additive_fwd_seed42.json"],
        _flip_additive_gains,
        {
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_additive_word_boundary_accuracy_is_0_0926",
            "test_additive_versus_no_injection_is_plus_0_0042_with_ci_minus_0_0042_to_plus_0_0126",
            "test_additive_versus_natural_language_relay_is_plus_0_0093_with_ci_minus_0_0126_to_plus_0_0311",
            "test_additive_injection_has_a_small_positive_mean_versus_no_injection",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
        },
    ),
    "translated norms halved (161x: still two orders of magnitude)": (
        REPLACE_FILES,
        _scale_inserted_norms(0.5),
        {"test_uncorrected_translated_vectors_have_norm_around_0_85_against_native_68_70"},
    ),
    "translated norms divided by 10 (808x)": (
        REPLACE_FILES,
        _scale_inserted_norms(0.1),
        {
            "test_uncorrected_translated_vectors_have_norm_around_0_85_against_native_68_70",
            "test_the_norm_gap_is_roughly_two_orders_of_magnitude",
        },
    ),
    # issue #27: each statement of the paper a careless pipeline can break in a few rows
    "item 1: one replacement row answers correctly (delta -0.0851, not -0.0859)": (
        ["h1_replace_fwd_seed456.json"],
        _answer_more(1),
        {
            "test_replacement_delta_is_minus_0_0859_versus_no_injection_and_minus_0_0808_versus_relay",
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
        },
    ),
    "item 2: the relay answers eight more questions (10.4%: above the 10% scope)": (
        ["h1_nl_relay_fwd_deterministic.json"],
        _answer_more(8),
        {
            "test_baseline_word_boundary_accuracy_is_below_10_percent",
            "test_additive_versus_natural_language_relay_is_plus_0_0093_with_ci_minus_0_0126_to_plus_0_0311",
            "test_replacement_delta_is_minus_0_0859_versus_no_injection_and_minus_0_0808_versus_relay",
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
        },
    ),
    "item 3: three replacement rows record a scale-corrected insert": (
        ["h1_replace_fwd_seed42.json"],
        _rows_set((0, 1, 2), "injected_norm_mean", lambda r: r["b_hidden_norm_mean"]),
        {"test_replacement_inserts_the_translators_output"},
    ),
    "item 3: self-injection records the sender as its state source": (
        ["h1_b_to_b_self_inject_fwd_deterministic.json"],
        lambda d: d["models"].update(model_a="EleutherAI/pythia-160m", layer_a="gpt_neox.layers.8"),
        {"test_self_injection_routes_the_receivers_own_states_at_the_receiver_block"},
    ),
    "item 3: three same-norm random rows insert the raw random vector": (
        ["h1_same_norm_random_fwd_seed123.json"],
        _rows_set((5, 6, 7), "injected_norm_mean", lambda r: r["translated_norm_mean"]),
        {"test_same_norm_random_and_the_shuffles_insert_receiver_scale_vectors"},
    ),
    "item 4: three additive rows were written without their token-id check": (
        ["h1_additive_fwd_seed123.json"],
        _drop_flags,
        {"test_every_row_of_a_sequence_level_condition_records_both_match_flags"},
    ),
    "item 4: two rows' sender prompts are a token longer, the flags still say equal": (
        ["h1_replace_fwd_seed123.json"],
        _rows_set((10, 11), "prompt_len_a", lambda r: r["prompt_len_a"] + 1),
        {"test_recorded_prompt_lengths_agree_with_the_match_flags"},
    ),
    "item 4: two relays ran past the 128-token budget": (
        ["h1_nl_relay_fwd_deterministic.json"],
        _long_relay,
        {
            "test_injection_and_no_injection_rows_read_the_full_prompt_and_relay_rows_a_budgeted_relay"
        },
    ),
    "item 4: three rows of one file record another receiver's native norms": (
        ["h1_scale_corrected_fwd_seed456_alpha1p0.json"],
        _rows_set((20, 21, 22), "b_hidden_norm_mean", lambda r: r["b_hidden_norm_mean"] * 1.5),
        {"test_every_file_of_one_direction_shows_the_same_receiver_native_norms"},
    ),
    "item 5: two full-n donors come from a bucket of another prompt length": (
        ["h1_shuffled_translation_fwd_seed42_alpha1p0.json"],
        _donor_of_another_length,
        {"test_every_shuffle_donor_has_the_rows_prompt_length"},
    ),
    "item 5: a singleton row's fallback flag is written on another row": (
        ["h1_shuffled_translation_fwd_seed456_alpha1p0.json"],
        _fallback_flag_moved,
        {
            "test_full_n_shuffle_self_fallbacks_are_exactly_the_singleton_bucket_rows",
            "test_full_n_shuffle_self_fallbacks_equal_the_number_of_singleton_buckets",
        },
    ),
    "item 6: an appendix reverse file decoded with repetition penalty 1.0": (
        ["h1_same_norm_random_rev_seed42.json"],
        lambda d: d["config"]["generation"].update(repetition_penalty=1.0),
        {
            # the validator's decoding check reads the 24-file grid only
            "test_every_result_file_decodes_greedily_with_the_stated_settings",
        },
    ),
    "item 6: two appendix rows carry a gold that is not the eval's": (
        ["h1_zero_replacement_rev_deterministic.json"],
        _another_gold,
        {"test_every_result_file_holds_clean_eval_ids_and_golds"},
    ),
    "item 7: additive seed 123's run saved again as seed 456": (
        ["h1_additive_fwd_seed456.json"],
        _seed_rows_of("h1_additive_fwd_seed123.json"),
        {
            "test_each_seed_file_is_a_distinct_run_of_the_seed_it_is_named_for",
            # the pooled additive numbers are those of another run mix: every one moves
            "test_additive_word_boundary_accuracy_is_0_0926",
            "test_additive_versus_no_injection_is_plus_0_0042_with_ci_minus_0_0042_to_plus_0_0126",
            "test_additive_versus_natural_language_relay_is_plus_0_0093_with_ci_minus_0_0126_to_plus_0_0311",
            "test_additive_injection_has_a_small_positive_mean_versus_no_injection",
            "test_audit_counts_are_unchanged",
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
        },
    ),
    "item 8: the translator's outputs 7% shorter (0.79: inside the old +/-10%)": (
        REPLACE_FILES,
        _scale_inserted_norms(0.93),
        {"test_uncorrected_translated_vectors_have_norm_around_0_85_against_native_68_70"},
    ),
    "item 8: best alpha loses 11 answers (0.40 of the way: inside the old 25-75%)": (
        ["h1_best_alpha_fwd_seed42_alpha0p3.json"],
        _answer_fewer(11),
        {
            "test_best_alpha_blend_falls_roughly_halfway_between_floor_and_baseline",
            "test_table_1_means_and_standard_deviations_are_the_published_ones",
            "test_table_3_paired_deltas_and_cis_are_the_published_ones",
            "test_summary_table_is_unchanged",
            "test_paired_comparisons_are_unchanged",
        },
    ),
}


@needs_artifact
@pytest.mark.slow
@pytest.mark.parametrize("mutation", list(MUTATIONS), ids=list(MUTATIONS))
def test_a_targeted_change_turns_exactly_its_claims_red(mutation: str, tmp_path: Path) -> None:
    files, change, expected = MUTATIONS[mutation]
    copy = tmp_path / "artifact"
    shutil.copytree(ARTIFACT, copy)
    if change is _copy_baseline_predictions or getattr(change, "from_root", False):
        change = change(copy)
    for name in files:
        _edit(copy, name, change)
    code, out = _run_claims(copy, tmp_path)
    assert code == 1, out[-3000:]
    assert _failed(out) == expected, out[-3000:]


@needs_artifact
@pytest.mark.slow
def test_loadgroup_scheduling_keeps_a_source_on_one_worker_and_records_its_status(
    tmp_path: Path,
) -> None:
    """``--dist loadgroup``: every claim of a source runs on the same xdist worker, and the
    claim-status file still keys outcomes by the bare source name."""
    code, out = _run_claims(ARTIFACT, tmp_path, "-n", "2", "--dist", "loadgroup", "-v")
    assert code == 0, out[-3000:]
    ran = [line for line in out.splitlines() if line.startswith("[gw") and "[paper]" in line]
    workers = {line.split("]")[0] for line in ran}
    assert len(ran) > 30 and len(workers) == 1, (workers, out[-2000:])
    recorded = json.loads((tmp_path / "status.json").read_text())["claims"]
    sources = {src for per_source in recorded.values() for src in per_source}
    assert "paper" in sources and not any("]" in s or "@" in s for s in sources), sources


@needs_artifact
@pytest.mark.slow
def test_every_claim_records_what_it_measured(tmp_path: Path) -> None:
    """PASS rows of the claim table carry numbers measured in that run."""
    code, out = _run_claims(ARTIFACT, tmp_path)
    assert code == 0, out[-3000:]
    status = json.loads((tmp_path / "status.json").read_text())
    ran = {
        name: entry["paper"]
        for name, entry in status["claims"].items()
        if entry.get("paper", {}).get("outcome") == "passed"
    }
    assert len(ran) >= 40
    assert all(e["measured"] for e in ran.values()), [
        n for n, e in ran.items() if not e["measured"]
    ]
    assert len({e["run"] for e in ran.values()}) == 1 == len({status["latest_run"]})


NORM_CLAIM = "test_uncorrected_translated_vectors_have_norm_around_0_85_against_native_68_70"


@needs_artifact
@pytest.mark.slow
@pytest.mark.parametrize(
    ("recorded", "outcome"),
    [(0.0851, "xfailed"), (0.09, "finding drifted")],
    ids=["recorded-number-holds", "recorded-number-drifted"],
)
def test_a_finding_whose_recorded_number_drifts_turns_red(
    recorded: float, outcome: str, tmp_path: Path
) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(ARTIFACT, copy)
    for name in REPLACE_FILES:
        _edit(copy, name, _scale_inserted_norms(0.1))
    findings = tmp_path / "findings.toml"
    findings.write_text(
        f'[{NORM_CLAIM}.paper]\nwhy = "test"\nrecorded = {{ translated = {recorded} }}\n'
        "[test_the_norm_gap_is_roughly_two_orders_of_magnitude.paper]\n"
        'why = "test"\nrecorded = { ratio = 807.5853 }\ntolerance = "exact"\n'
    )
    code, out = _run_claims(copy, tmp_path, findings=findings)
    assert outcome in out, out[-3000:]
    assert code == (0 if outcome == "xfailed" else 1), out[-3000:]


def test_a_passing_claim_with_a_finding_turns_red(tmp_path: Path) -> None:
    """xfail is strict: a finding that stops being one must be revisited."""
    if ARTIFACT is None:
        pytest.skip("paper artifact not found")
    findings = tmp_path / "findings.toml"
    findings.write_text('[test_the_norm_gap_is_roughly_two_orders_of_magnitude.paper]\nwhy = "x"\n')
    code, out = _run_claims(
        ARTIFACT, tmp_path, "-p", "no:xdist", "-q", "-k", "norm_gap", findings=findings
    )
    assert code == 1 and "XPASS(strict)" in out, out[-3000:]


# Issue #27, item 9: the best-of-three-f claims of test_91 correct for multiplicity (Holm).
# The last-token claims need last-token runs, which the paper artifact does not hold, so the
# corruption is made on a small withheld-regime source written here: 396 eval rows, the relay
# deterministic, each of Ramesh & Li's three f one seed's run.
_N_ROWS = 396


def _last_token_source(tmp_path: Path, gained: int, lost: int):
    """A withheld-regime source (protocols/mini-withheld.toml) whose three last-token f each
    answer ``gained`` rows the relay misses and miss ``lost`` rows the relay answers (a
    different slice of rows per f), every other row as the relay does."""
    from harness.analysis.results import write_result_file
    from harness.protocol import load_protocol
    from harness.sources import Source

    golds = [f"Name{i}" for i in range(_N_ROWS)]
    relay = [i % 2 == 0 for i in range(_N_ROWS)]  # the relay answers half the rows

    def data(condition: str, seed: int | None, correct: list[bool]) -> dict:
        return {
            "schema_version": "h1_final_runner.v1",
            "condition": condition,
            "direction": "fwd",
            "seed": seed,
            "deterministic": seed is None,
            "config": {
                "clean_eval_hash": "synthetic",
                "n_samples": _N_ROWS,
                "generation": {},
                "layer_rel": 0.5,
                "max_length": 256,
            },
            "models": {},
            "injection": {},
            "per_sample": [
                {"sample_id": f"s{i}", "gold": g, "prediction": g if ok else "I do not know."}
                for i, (g, ok) in enumerate(zip(golds, correct, strict=True))
            ],
            "metrics": {},
            "diagnostics": {
                "seq_len_mismatch_count": 0,
                "token_mismatch_count": 0,
                "shuffle_self_fallback_count": 0,
            },
        }

    out = tmp_path / f"g{gained}-l{lost}"
    out.mkdir()
    write_result_file(out, data("nl_relay", None, relay))
    write_result_file(out, data("no_inject", None, relay))
    for k, condition in enumerate(("last_token_sum", "last_token_mean", "last_token_replace")):
        correct = list(relay)
        misses = [i for i in range(_N_ROWS) if not relay[i]][k * gained : (k + 1) * gained]
        hits = [i for i in range(_N_ROWS) if relay[i]][k * lost : (k + 1) * lost]
        for i in misses:
            correct[i] = True
        for i in hits:
            correct[i] = False
        write_result_file(out, data(condition, 42, correct))
    return Source(
        name="holm-check",
        protocol=load_protocol("mini-withheld"),
        result_dirs=[out],
        eval_path=None,
    )


def _holds(claim, source) -> tuple[bool, str, dict[str, float]]:
    """Call a claim on ``source``: whether it held, its message and its measured numbers."""
    numbers: dict[str, float] = {}

    def measured(text: str, **values: float) -> str:
        numbers.update(values)
        return text

    try:
        claim(source, measured)
    except AssertionError as exc:
        return False, str(exc), numbers
    return True, "", numbers


def test_a_best_of_three_gain_that_only_an_uncorrected_test_sees_turns_the_claim_red(
    tmp_path: Path,
) -> None:
    """Each f answers 13 more rows than the relay and 4 fewer: each f's own 95% CI lies above
    zero (the uncorrected best-of-three claim passed), but no f survives Holm's first step at
    0.025 / 3, so "some last-token condition beats the relay" is red. A larger gain (40 rows)
    passes: the correction demands more evidence, it does not forbid the claim."""
    from claims.test_91_beyond_the_paper_last_token import (
        test_activation_communication_beats_the_natural_language_relay as claim,
    )

    weak = _last_token_source(tmp_path, gained=13, lost=4)
    rows = [weak.comparisons[(c, "nl_relay")] for c in ("last_token_sum", "last_token_mean")]
    rows.append(weak.comparisons[("last_token_replace", "nl_relay")])
    assert all(r.ci_low > 0 for r in rows), rows  # the uncorrected reading holds
    held, why, numbers = _holds(claim, weak)
    assert not held and "Holm-adjusted" in why, why
    assert 0.025 < numbers["holm_p"] <= 3 * 0.025, numbers  # each f alone: p below 0.025

    held, _, numbers = _holds(claim, _last_token_source(tmp_path, gained=40, lost=4))
    assert held and numbers["holm_p"] <= 0.025, numbers


def test_the_no_harm_claim_states_its_power_and_turns_red_when_a_few_rows_are_lost(
    tmp_path: Path,
) -> None:
    """The negative claim "no f is destructive" reports the smallest harm it could detect:
    where no f changes an answer (zero-variance deltas) that is z^2 / (n + z^2), about 1.9 pp
    for 396 rows at one-sided 2.5% and 80% power, not zero. Twenty rows lost by each f turn
    it red."""
    from claims.test_91_beyond_the_paper_last_token import (
        test_last_token_injection_is_not_destructive as claim,
    )

    held, _, numbers = _holds(claim, _last_token_source(tmp_path, gained=0, lost=0))
    z = 1.959964 + 0.841621
    assert held, numbers
    assert numbers["detectable"] == pytest.approx(z * z / (_N_ROWS + z * z), rel=1e-5)
    held, why, _ = _holds(claim, _last_token_source(tmp_path, gained=0, lost=20))
    assert not held and "smallest detectable harm" in why, why
