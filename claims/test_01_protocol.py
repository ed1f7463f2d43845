"""Sections 3.1 and 3.3 -- The frozen protocol: the pair, the injection site, the strengths, the
seeds, and the per-row evidence the runner records.

Each claim reads the values from every result file's own ``models``, ``config`` and
``injection`` records, never from the protocol TOML. For a source that follows the paper's
protocol (``paper``, ``pythia``) the expected values are the paper's own words, quoted below;
for any other source (``mini``, a protocol file) they are that protocol's equivalents.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from claims._util import need
from harness.analysis.results import ResultFile
from harness.conditions import get_condition
from harness.sources import Source

# Section 3.1 and Appendix A, Table 2.
PAPER_SENDER = "EleutherAI/pythia-160m"
PAPER_RECEIVER = "EleutherAI/pythia-410m"
PAPER_DEPTH = 0.67
PAPER_LAYERS = ("gpt_neox.layers.8", "gpt_neox.layers.16")
PAPER_ADDITIVE_SCALE = 0.01
PAPER_SCALE_CORRECTED_ALPHA = 1.0
PAPER_BEST_ALPHA = 0.30
PAPER_SEEDS = (42, 123, 456)


@dataclass(frozen=True)
class Expected:
    sender: str
    receiver: str
    depth: float
    layers: tuple[str, str] | None  # None: resolved from the model folders' configs
    additive_scale: float
    scale_corrected_alpha: float
    best_alpha: float
    seeds: tuple[int, ...]
    origin: str


def expected(source: Source) -> Expected:
    p = source.protocol
    if p.name == "paper":
        return Expected(
            PAPER_SENDER,
            PAPER_RECEIVER,
            PAPER_DEPTH,
            PAPER_LAYERS,
            PAPER_ADDITIVE_SCALE,
            PAPER_SCALE_CORRECTED_ALPHA,
            PAPER_BEST_ALPHA,
            PAPER_SEEDS,
            "the paper",
        )
    return Expected(
        p.models.sender,
        p.models.receiver,
        p.models.relative_depth,
        _layers_from_configs(source),
        p.injection.additive_scale,
        p.injection.scale_corrected_alpha,
        p.injection.best_alpha,
        tuple(p.run.seeds),
        f"protocol {p.name}",
    )


def _layers_from_configs(source: Source) -> tuple[str, str] | None:
    """floor(depth x layers) of each local model folder (GPT-NeoX naming), or None for hub ids."""
    names = []
    for model in (source.protocol.models.sender, source.protocol.models.receiver):
        cfg = source.protocol.resolve_path(model) / "config.json"
        if not cfg.is_file():
            return None
        data = json.loads(Path(cfg).read_text(encoding="utf-8"))
        n = data.get("num_hidden_layers") or data.get("n_layer")
        idx = math.floor(source.protocol.models.relative_depth * n + 1e-9)
        names.append(f"gpt_neox.layers.{idx}")
    return names[0], names[1]


def _sides(f: ResultFile) -> tuple[str, str, str | None, str | None]:
    """(sender, receiver, sender block, receiver block) as the file records them."""
    m = f.models
    return m["model_a"], m["model_b"], m.get("layer_a"), m.get("layer_b")


def _want(want: Expected, f: ResultFile) -> tuple[str, str, tuple[str, str] | None]:
    """The expected (sender, receiver, blocks) of a file: ``rev`` runs the pair backwards."""
    if f.direction == "rev":
        layers = (want.layers[1], want.layers[0]) if want.layers else None
        return want.receiver, want.sender, layers
    return want.sender, want.receiver, want.layers


def test_every_result_file_names_the_sender_and_receiver_of_the_protocol(
    source: Source, measured
) -> None:
    """ "The primary direction is Pythia-160M to Pythia-410M." (Section 3.1) -- every file's
    receiver, and the sender of every file whose injected states or relay come from it (the
    controls name their own state source: the receiver itself, random or zero vectors);
    ``rev`` appendix files run the same pair the other way round."""
    want = expected(source)
    bad, pairs = [], set()
    for f in source.results:
        sender, receiver = _sides(f)[:2]
        w_sender, w_receiver, _ = _want(want, f)
        from_sender = get_condition(f.condition).uses_translator or f.condition == "nl_relay"
        pairs.add(f"{f.direction}: {sender if from_sender else '(control)'} -> {receiver}")
        if receiver != w_receiver or (from_sender and sender != w_sender):
            bad.append(f"{f.name}: {sender} -> {receiver}")
    msg = measured(f"{len(source.results)} files; {sorted(pairs)}")
    assert not bad, f"{msg}; expected {want.sender} -> {want.receiver}; wrong: {bad[:4]}"


def test_injection_sites_are_the_blocks_at_relative_depth_0_67(source: Source, measured) -> None:
    """ "The injection depth is fixed at relative depth 0.67, corresponding to sender layer
    gpt_neox.layers.8 and receiver layer gpt_neox.layers.16." (Section 3.1) -- every file's
    relative depth and receiver block, and the sender block wherever states come from the
    sender."""
    want = expected(source)
    depths = sorted({f.config.get("layer_rel") for f in source.results}, key=str)
    sites, bad = set(), []
    for f in source.results:
        s_layer, r_layer = _sides(f)[2:]
        translated = get_condition(f.condition).uses_translator
        injected = get_condition(f.condition).sequence_level
        if not injected:  # no-injection and the relay name no block
            continue
        sites.add(f"{f.direction}: {s_layer if translated else '(control)'} -> {r_layer}")
        layers = _want(want, f)[2]
        if layers is None:
            layers = (s_layer, r_layer) if f.direction == "fwd" else (r_layer, s_layer)
        if r_layer != layers[1] or (translated and s_layer != layers[0]):
            bad.append(f"{f.name}: {s_layer} -> {r_layer}")
    fwd = {x for x in sites if x.startswith("fwd")}
    msg = measured(f"relative depth {depths}; blocks {sorted(sites)}")
    assert depths == [want.depth], f"{msg}; expected {want.depth}"
    assert not bad, f"{msg}; expected {want.layers}; wrong: {bad[:4]}"
    if want.layers is None:
        assert len({x.rsplit(" -> ", 1)[1] for x in fwd}) == 1, msg


def _injection_values(source: Source, condition: str, key: str) -> list[object]:
    need(source, condition)
    return sorted({f.injection.get(key) for f in source.results.runs(condition)}, key=str)


def test_additive_injection_adds_0_01_of_the_translated_vector(source: Source, measured) -> None:
    """ "Additive: h + 0.01 * t_last" -- the low-strength additive scale of Section 3.3,
    serialised as ``injection.scale`` in every additive file."""
    want = expected(source).additive_scale
    got = _injection_values(source, "additive", "scale")
    msg = measured(f"additive scale {got} (expected {want})")
    assert got == [want], msg


def test_scale_corrected_replacement_and_the_shuffles_use_alpha_1_0(
    source: Source, measured
) -> None:
    """Scale-corrected replacement ``h <- alpha * normalize(t) * ||h|| + (1 - alpha) * h`` with
    alpha 1.0 (Appendix A, Table 2); the shuffled controls are scale-corrected the same way."""
    want = expected(source).scale_corrected_alpha
    conds = ("scale_corrected", "shuffled_translation", "shuffled_translation_strict_matched")
    got = {c: _injection_values(source, c, "alpha") for c in conds if c in source.summary}
    need(source, "scale_corrected")
    msg = measured(f"alpha per condition {got} (expected {want})")
    assert all(v == [want] for v in got.values()), msg


def test_the_best_alpha_blend_uses_the_frozen_historical_alpha_0_30(
    source: Source, measured
) -> None:
    """ "The best-alpha condition uses alpha = 0.30 from a historical pilot that predates the
    clean-eval final rerun." (Section 5)"""
    want = expected(source).best_alpha
    got = _injection_values(source, "best_alpha", "alpha")
    msg = measured(f"best_alpha alpha {got} (expected {want})")
    assert got == [pytest.approx(want)], msg


def test_seed_dependent_conditions_ran_once_for_each_of_the_seeds_42_123_and_456(
    source: Source, measured
) -> None:
    """Seed-dependent conditions run under seeds 42, 123 and 456; no-injection, relay and
    self-injection are deterministic, one file each (Section 3.4, Appendix A)."""
    want = set(expected(source).seeds)
    bad = {}
    for cond in source.results.conditions("fwd"):
        runs = source.results.runs(cond)
        seeds = sorted((f.seed for f in runs), key=str)
        det = all(f.deterministic for f in runs)
        if (
            (det and seeds != [None])
            or (not det and set(seeds) != want)
            or len(seeds) != len(set(seeds))
        ):
            bad[cond] = seeds
    msg = measured(f"{len(source.results.conditions('fwd'))} conditions; seeds {sorted(want)}")
    assert not bad, f"{msg}; wrong seeds: {bad}"


_SEED_IN_NAME = re.compile(r"_seed(\d+)")


def test_each_seed_file_is_a_distinct_run_of_the_seed_it_is_named_for(
    source: Source, measured
) -> None:
    """Three seeds means three runs (issue #27, item 7): for every seed-dependent condition,
    each file's own records name the seed of its file name (the top-level ``seed``, and the
    ``seed`` of its translator record where it carries one), and no two seed files hold
    identical per-sample rows (predictions, norms, donors: the whole row). Identical rows
    are one run saved under two names; a record naming another seed is a run filed under the
    wrong name. Conditions whose predictions do not depend on the seed still differ in their
    recorded norms (the translator is fitted per seed), so identical rows are never
    legitimate."""
    bad, runs_seen, copies = [], 0, 0
    for direction in source.results.directions():
        for cond in source.results.conditions(direction):
            runs = source.results.runs(cond, direction)
            if all(f.deterministic for f in runs):
                continue
            seen: dict[str, str] = {}
            for f in runs:
                runs_seen += 1
                named = _SEED_IN_NAME.search(f.name)
                recorded = {f.seed}
                t = f.raw.get("translator")
                if isinstance(t, dict) and "seed" in t:
                    recorded.add(t["seed"])
                if named is None or recorded != {int(named.group(1))}:
                    bad.append(f"{f.name}: records seed(s) {sorted(recorded, key=str)}")
                rows = json.dumps(f.per_sample, sort_keys=True)
                if rows in seen:
                    copies += 1
                    bad.append(f"{f.name} has the rows of {seen[rows]}")
                seen.setdefault(rows, f.name)
    msg = measured(
        f"{runs_seen} seed files; {copies} hold another seed's rows; {len(bad)} problems",
        copies=copies,
        problems=len(bad),
    )
    assert not bad, f"{msg}: {bad[:4]}"


# -- Section 3.3: the per-row evidence the runner records (issue #27, item 4) ----------------
def _sequence_level_files(source: Source) -> list[ResultFile]:
    return [f for f in source.results if get_condition(f.condition).sequence_level]


def test_every_row_of_a_sequence_level_condition_records_both_match_flags(
    source: Source, measured
) -> None:
    """ "Replacement-style injection is only valid when sender and receiver prompt token
    sequences have matching length and token IDs. The runner records both checks for every
    sample." (Section 3.3) -- every row of every sequence-level file (appendix files
    included) carries ``token_ids_match`` and ``seq_len_match`` as booleans: a missing flag
    is a failure, not a pass. (Whether they are true is the mismatch-count claim's.)"""
    files = _sequence_level_files(source)
    if not files:
        pytest.skip(f"{source.name} has no sequence-level injection files")
    bad = {}
    for f in files:
        rows = [
            r.get("idx")
            for r in f.per_sample
            if not all(isinstance(r.get(k), bool) for k in ("token_ids_match", "seq_len_match"))
        ]
        if rows:
            bad[f.name] = rows[:3]
    msg = measured(f"{len(files)} sequence-level files; {len(bad)} with unflagged rows")
    assert not bad, f"{msg}: {bad}"


def test_recorded_prompt_lengths_agree_with_the_match_flags(source: Source, measured) -> None:
    """The two checks of Section 3.3 and the prompt lengths recorded beside them tell one
    story: ``seq_len_match`` is true exactly when the sender's and the receiver's prompt
    lengths are equal, and matching token ids imply matching lengths. Rows with no sender
    length (self-injection, random and zero vectors: no sender reads the prompt) must report
    matching lengths."""
    files = _sequence_level_files(source)
    if not files:
        pytest.skip(f"{source.name} has no sequence-level injection files")
    bad, n = [], 0
    for f in files:
        for r in f.per_sample:
            n += 1
            seq, tok = r.get("seq_len_match"), r.get("token_ids_match")
            if "prompt_len_a" in r:
                wrong = seq != (r["prompt_len_a"] == r.get("prompt_len_b"))
            else:
                wrong = seq is not True
            if wrong or (tok is True and seq is not True):
                bad.append(
                    f"{f.name}#{r.get('idx')}: lengths {r.get('prompt_len_a')}/"
                    f"{r.get('prompt_len_b')}, seq {seq}, tokens {tok}"
                )
    msg = measured(f"{n} rows; {len(bad)} disagree")
    assert not bad, f"{msg}: {bad[:4]}"


def test_injection_and_no_injection_rows_read_the_full_prompt_and_relay_rows_a_budgeted_relay(
    source: Source, measured
) -> None:
    """ "For activation-transfer and no-injection conditions, the receiver uses the full task
    prompt containing the source context and question." and "The natural-language sender
    relay uses 128 new tokens." (Section 3.3) -- every non-relay row is in ``full_input``
    mode and reads as many tokens as the same sample's row in every other file of its
    direction (no-injection's in the primary direction), within the protocol's
    ``max_length``; every relay row carries a non-empty relay of at most the relay budget in
    whitespace words (a BPE tokenizer that splits on spaces gives each word at least one
    token, so more words than the budget means more tokens) and a sender prompt length."""
    p = source.protocol
    budget = p.decoding.relay_max_new_tokens
    bad = []
    for direction in source.results.directions():
        files = [f for f in source.results if f.direction == direction]
        ref: dict[str, int] = {}
        for f in sorted(files, key=lambda f: f.condition != "no_inject"):
            if f.condition == "nl_relay":
                for r in f.per_sample:
                    relay = r.get("relay")
                    if not (isinstance(relay, str) and relay.strip()) or not (
                        len(relay.split()) <= budget and isinstance(r.get("sender_prompt_len"), int)
                    ):
                        words = len(relay.split()) if isinstance(relay, str) else relay
                        bad.append(f"{f.name}#{r.get('idx')}: relay of {words} words")
                continue
            for r in f.per_sample:
                length = r.get("prompt_len_b")
                want = ref.setdefault(r["sample_id"], length)
                if (
                    r.get("prompt_mode") != "full_input"
                    or length != want
                    or not (isinstance(length, int) and 0 < length <= p.prompt.max_length)
                ):
                    bad.append(
                        f"{f.name}#{r.get('idx')}: {r.get('prompt_mode')} of {length} "
                        f"tokens (expected {want})"
                    )
    msg = measured(f"{len(source.results)} files; {len(bad)} rows off (relay budget {budget})")
    assert not bad, f"{msg}: {bad[:4]}"


def test_every_file_of_one_direction_shows_the_same_receiver_native_norms(
    source: Source, measured
) -> None:
    """One direction has one receiver reading one prompt per sample, so the native
    hidden-state norm each injection row records (``b_hidden_norm_mean``, measured before
    the hook changes the state) is the same in every sequence-level file of that direction,
    sample by sample (within 1e-4 relative: the same forward pass on the same input). A file
    whose native norms differ ran another receiver, layer or prompt."""
    files = _sequence_level_files(source)
    if not files:
        pytest.skip(f"{source.name} has no sequence-level injection files")
    bad, n = [], 0
    for direction in source.results.directions():
        ref: dict[str, tuple[float, str]] = {}
        for f in files:
            if f.direction != direction:
                continue
            for r in f.per_sample:
                v = r.get("b_hidden_norm_mean")
                if not isinstance(v, (int, float)):
                    bad.append(f"{f.name}#{r.get('idx')}: no native norm")
                    continue
                n += 1
                want, where = ref.setdefault(r["sample_id"], (v, f.name))
                if abs(v - want) > 1e-4 * abs(want):
                    bad.append(f"{f.name}#{r.get('idx')}: {v:.4f} vs {want:.4f} in {where}")
    msg = measured(f"{n} rows; {len(bad)} disagree")
    assert not bad, f"{msg}: {bad[:4]}"
