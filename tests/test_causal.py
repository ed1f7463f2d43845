"""The causal translator (issue #9): trained through the frozen receiver, injected as at inference."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from harness import events
from harness.analysis.results import load_result_file
from harness.analysis.validate import validate
from harness.errors import HarnessError
from harness.model.activations import capture
from harness.model.causal import (
    CausalConfig,
    CausalExample,
    _batch,
    _TrainingInjection,
    answer_losses,
    fit_causal_translator,
)
from harness.model.injection import InjectionSpec, PrefillInjection, pad_sources
from harness.model.translator import fit_translator, load_translator
from harness.protocol import load_protocol
from harness.run.runner import run_protocol
from tests.model_fixtures import build_tiny_experiment, edit_protocol, tiny_model

CFG = CausalConfig(
    lr=1e-2,
    weight_decay=0.0,
    steps=12,
    batch_size=4,
    warmup_frac=0.1,
    val_frac=0.25,
    eval_every=3,
    alignment_weight=0.0,
    rank=0,
)


@pytest.fixture(scope="module")
def pair():
    """A tiny sender (3 x 32) and receiver (4 x 48), random prompts, a linear fit."""
    sender = tiny_model(1, hidden=32, layers=3)
    receiver = tiny_model(2, hidden=48, layers=4)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 99, (int(n),), generator=gen).tolist() for n in [7, 9, 8] * 4]
    # one fixed answer for every prompt: a signal the map can learn to inject from a few
    # prompts and that carries over to the held-out ones
    answers = [[5, 7] for _ in prompts]
    xs = capture(sender, sender.gpt_neox.layers[1], prompts, site="s", pad_id=1, batch_size=4)
    ys = capture(receiver, receiver.gpt_neox.layers[2], prompts, site="r", pad_id=1, batch_size=4)
    x, y = xs.concat(), ys.concat()
    linear = fit_translator(x, y, method="ridge", seed=0, val_frac=0.2)
    examples = [
        CausalExample(tuple(p), s, tuple(a))
        for p, s, a in zip(prompts, xs.states, answers, strict=True)
    ]
    return receiver, examples, linear, x, y


def _fit(pair, cfg: CausalConfig = CFG, mode: str = "replace", seed: int = 0, fast: bool = True):
    receiver, examples, linear, x, y = pair
    spec = (
        InjectionSpec("replace")
        if mode == "replace"
        else InjectionSpec("additive", scale=0.01, broadcast_last=True)
    )
    return fit_causal_translator(
        receiver,
        receiver.gpt_neox.layers[2],
        examples,
        init=linear,
        spec=spec,
        cfg=cfg,
        seed=seed,
        pad_id=1,
        token_x=x,
        token_y=y,
        token_val_frac=0.2,
        mode=mode,
        fast=fast,
    )


def test_training_changes_only_the_map_never_the_receiver(pair) -> None:
    receiver = pair[0]
    before = {k: v.clone() for k, v in receiver.state_dict().items()}
    flags = [p.requires_grad for p in receiver.parameters()]
    t = _fit(pair)
    assert all(torch.equal(before[k], v) for k, v in receiver.state_dict().items())
    assert [p.requires_grad for p in receiver.parameters()] == flags
    assert not receiver.training
    assert not torch.allclose(t.weight, pair[2].weight)  # the map itself did move


@pytest.mark.parametrize("mode", ["replace", "additive"])
def test_training_lowers_the_held_out_answer_loss(pair, mode) -> None:
    m = _fit(pair, mode=mode).metrics
    assert m["best_step"] > 0
    assert m["val_answer_nll"] < m["val_answer_nll_init"] - 1e-3, m["val_nll_history"]
    assert m["objective"] == "receiver_answer_nll" and m["injection_mode"] == mode
    assert [s for s, _ in m["val_nll_history"]] == [0, 3, 6, 9, 12]


def test_the_same_seed_refits_bit_for_bit_and_another_seed_differs(pair) -> None:
    a, b, c = _fit(pair, seed=5), _fit(pair, seed=5), _fit(pair, seed=6)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)


def test_a_rank_r_map_stays_rank_r(pair) -> None:
    t = _fit(pair, dataclasses.replace(CFG, rank=2))
    assert torch.linalg.matrix_rank(t.weight.double(), rtol=1e-4).item() == 2  # float32 noise
    with pytest.raises(HarnessError, match=r"causal\.rank = 99 exceeds"):
        _fit(pair, dataclasses.replace(CFG, rank=99))


def test_the_alignment_term_keeps_the_map_closer_to_the_receiver_directions(pair) -> None:
    cfg = dataclasses.replace(CFG, lr=5e-2, steps=24)
    free = _fit(pair, cfg).metrics["normalized_cosine"]
    tied = _fit(pair, dataclasses.replace(cfg, alignment_weight=50.0)).metrics["normalized_cosine"]
    assert tied > free + 0.01, (tied, free)


@pytest.mark.parametrize("mode", ["replace", "additive"])
def test_training_injection_equals_the_runners_prefill_injection(pair, mode) -> None:
    """The logits the map is trained on are the logits generation sees: the teacher-forced
    forward with the training hook matches the prefill hook at every prompt position."""
    receiver, examples, linear, _, _ = pair
    module = receiver.gpt_neox.layers[2]
    spec = (
        InjectionSpec("replace")
        if mode == "replace"
        else InjectionSpec("additive", scale=3.0, broadcast_last=True)
    )
    batch = examples[:3]
    translated = [linear(e.sender_states) for e in batch]
    if mode == "additive":
        translated = [t[-1:].expand_as(t) for t in translated]
    # training path: prompt + answer, left padded as a whole
    ids, mask, pos, prompt, _ = _batch(batch, pad_id=1)
    flat = torch.cat(translated)
    source = flat.new_zeros((*prompt.shape, flat.shape[-1])).masked_scatter(
        prompt.unsqueeze(-1), flat
    )
    hook = _TrainingInjection(module, spec, source, prompt)
    with torch.no_grad(), hook:
        train_logits = receiver(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    # inference path: the runner's hook on the left-padded prompts alone
    from harness.model.activations import left_pad

    p_ids, p_mask, p_pos = left_pad([e.prompt_ids for e in batch], 1)
    src = pad_sources(translated, p_ids.shape[1])
    with torch.no_grad(), PrefillInjection(module, spec, src, p_mask):
        infer_logits = receiver(input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos).logits
    for i, e in enumerate(batch):
        n = len(e.prompt_ids)
        a = train_logits[i][prompt[i]]
        b = infer_logits[i, p_ids.shape[1] - n :]
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    # and the injection matters: the clean receiver gives other logits
    clean, _ = answer_losses(receiver, batch, pad_id=1)
    injected, _ = answer_losses(
        receiver, batch, pad_id=1, module=module, spec=spec, translate=linear
    )
    assert not torch.allclose(clean, injected)


def test_an_empty_answer_is_refused(pair) -> None:
    receiver, examples, *_ = pair
    bad = [dataclasses.replace(examples[0], answer_ids=())]
    with pytest.raises(HarnessError, match="empty answer"):
        answer_losses(receiver, bad, pad_id=1)


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory):
    """The runner's causal conditions on the tiny experiment (events logged)."""
    root = tmp_path_factory.mktemp("causal")
    proto = build_tiny_experiment(root / "exp", seeds=(42,))
    out = root / "out"
    log = root / "events.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_EVENTS", str(log))
        run_protocol(
            str(proto),
            out,
            conditions=["no_inject", "replace", "causal_replace", "causal_additive"],
            progress=False,
        )
    return proto, out, log


def test_causal_conditions_write_result_files_in_the_schema(causal_run) -> None:
    _, out, _ = causal_run
    for name, mode in (("causal_replace", "replace"), ("causal_additive", "additive")):
        f = load_result_file(out / f"h1_{name}_fwd_seed42.json")
        assert f.injection["mode"] == mode
        assert f.injection["translator_objective"] == "receiver_answer_nll"
        tr = f.raw["translator"]
        assert tr["method"] == f"causal_{mode}" and tr["seed"] == 42
        assert (out / f.raw["checkpoint"]).is_file()
        assert load_translator(out / f.raw["checkpoint"]).config.method == f"causal_{mode}"
        assert "prompt_len_a" in f.per_sample[0] and "injected_norm_mean" in f.per_sample[0]
    linear = json.loads((out / "h1_replace_fwd_seed42.json").read_text())["translator"]
    assert linear["method"] == "adamw"


def test_each_translator_is_fitted_once_and_reused_on_resume(causal_run) -> None:
    proto, out, log = causal_run
    counts = events.count_events(log)
    assert sum(counts["translator"].values()) == 3  # linear + two causal, seed 42
    assert all(v == 1 for v in counts["translator"].values())
    (out / "h1_causal_additive_fwd_seed42.json").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_EVENTS", str(log))
        run_protocol(str(proto), out, conditions=["causal_additive"], progress=False)
    assert events.count_events(log)["translator"] == counts["translator"]


def test_validation_checks_extension_files_with_the_grid(causal_run) -> None:
    proto, out, _ = causal_run
    report = validate([out], load_protocol(proto))
    checks = {c.name: c for c in report.checks}
    assert checks["extension_files"].passed
    assert "2 extension files" in checks["extension_files"].detail
    assert "causal" not in checks["extra_files"].detail
    # an extension file with a wrong sample count is caught like a grid file
    path = out / "h1_causal_replace_fwd_seed42.json"
    data = json.loads(path.read_text())
    data["per_sample"] = data["per_sample"][:-1]
    bad = out.parent / "bad"
    bad.mkdir()
    (bad / path.name).write_text(json.dumps(data))
    checks = {c.name: c for c in validate([bad], load_protocol(proto)).checks}
    assert not checks["sample_counts"].passed


def test_protocol_refuses_a_bad_causal_recipe(tmp_path: Path) -> None:
    proto = build_tiny_experiment(tmp_path, seeds=(42,), overrides={"causal": {"lr": 0.0}})
    with pytest.raises(HarnessError, match=r"causal\.lr = 0\.0: must be a finite number > 0"):
        load_protocol(proto)
    edit_protocol(proto, {"causal": {"lr": 1e-2}, "run": {"extension_conditions": ["x"]}})
    with pytest.raises(HarnessError, match=r"run\.extension_conditions has 'x': must be one of"):
        load_protocol(proto)


def test_too_few_prompts_or_a_diverging_loss_are_one_line_errors(pair) -> None:
    receiver, examples, linear, x, y = pair
    with pytest.raises(HarnessError, match=r"only 1 causal training prompt\(s\)"):
        _fit((receiver, examples[:1], linear, x, y))
    poisoned = [
        dataclasses.replace(e, sender_states=e.sender_states * float("nan")) for e in examples
    ]
    with pytest.raises(HarnessError, match=r"loss became nan at step 1 -- lower \[causal\] lr"):
        _fit((receiver, poisoned, linear, x, y))


def test_the_fast_path_trains_the_same_map_as_the_full_forward(pair) -> None:
    """Running only the blocks above the site on cached block outputs is an optimisation,
    never a change of result."""
    receiver = pair[0]
    blocks = list(receiver.gpt_neox.layers)
    fast, full = _fit(pair), _fit(pair, fast=False)
    assert fast.metrics["fast_path"] is True and full.metrics["fast_path"] is False
    torch.testing.assert_close(fast.weight, full.weight, atol=1e-4, rtol=1e-3)
    hist_fast = [v for _, v in fast.metrics["val_nll_history"]]
    hist_full = [v for _, v in full.metrics["val_nll_history"]]
    assert hist_fast == pytest.approx(hist_full, rel=1e-4)
    assert list(receiver.gpt_neox.layers) == blocks  # the block list is restored


def _withheld(examples, drop: int = 3):
    """The examples with the receiver's prompt shortened (its first ``drop`` tokens withheld);
    the sender still reads, and its states cover, the whole prompt."""
    return [dataclasses.replace(e, prompt_ids=e.prompt_ids[drop:]) for e in examples]


def test_last_token_training_injection_equals_the_runners_last_token_injection(pair) -> None:
    """Last-token training injects what ``last_token_replace`` injects at inference: the
    sender's last translated state at the receiver's last prompt position, the receiver
    reading a shorter prompt than the sender; every earlier position is untouched."""
    receiver, examples, linear, _, _ = pair
    module = receiver.gpt_neox.layers[2]
    spec = InjectionSpec("replace", positions="last")
    batch = _withheld(examples[:3])
    ids, mask, pos, prompt, _ = _batch(batch, pad_id=1)
    with torch.no_grad():
        injected, _ = answer_losses(
            receiver, batch, pad_id=1, module=module, spec=spec, translate=linear
        )
        clean, _ = answer_losses(receiver, batch, pad_id=1)
    assert not torch.allclose(clean, injected)
    # the runner's path: left-padded prompts, the last column masked, the last state placed
    from harness.model.activations import left_pad

    p_ids, p_mask, p_pos = left_pad([e.prompt_ids for e in batch], 1)
    sources = []
    for e in batch:
        src = torch.zeros(len(e.prompt_ids), linear.config.receiver_dim)
        src[-1] = linear(e.sender_states)[-1]
        sources.append(src)
    last = torch.zeros_like(p_mask)
    last[:, -1] = 1
    with torch.no_grad():
        plain = receiver(input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos).logits
        with PrefillInjection(module, spec, pad_sources(sources, p_ids.shape[1]), last):
            infer = receiver(input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos).logits
    from harness.model.causal import _sites, _sources

    sites = _sites(prompt, spec)
    assert sites.sum(1).tolist() == [1, 1, 1]
    source = _sources(batch, linear, prompt, spec)
    hook = _TrainingInjection(module, spec, source, sites)
    with torch.no_grad(), hook:
        train = receiver(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    for i, e in enumerate(batch):
        n = len(e.prompt_ids)
        a = train[i][prompt[i]]
        b = infer[i, p_ids.shape[1] - n :]
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
        # causal attention: every position before the last sees no injection
        torch.testing.assert_close(b[:-1], plain[i, p_ids.shape[1] - n : -1], atol=1e-5, rtol=0)
        assert not torch.allclose(b[-1], plain[i, -1])


def test_a_last_token_map_trains_with_a_receiver_prompt_that_withholds_tokens(pair) -> None:
    receiver, examples, linear, x, y = pair
    t = fit_causal_translator(
        receiver,
        receiver.gpt_neox.layers[2],
        _withheld(examples),
        init=linear,
        spec=InjectionSpec("replace", positions="last"),
        cfg=CFG,
        seed=0,
        pad_id=1,
        token_x=x,
        token_y=y,
        token_val_frac=0.2,
        mode="replace",
    )
    m = t.metrics
    assert t.config.method == "causal_last_token_replace"
    assert m["best_step"] > 0 and m["fast_path"]
    assert m["val_answer_nll"] < m["val_answer_nll_init"] - 1e-3, m["val_nll_history"]


def test_the_runner_trains_and_runs_the_last_token_causal_map_in_the_withheld_regime(
    tmp_path,
) -> None:
    """``last_token_causal_replace`` on a protocol whose receiver does not see the context:
    the map is trained with the receiver reading its own (context-free) training prompts."""
    proto = build_tiny_experiment(tmp_path / "exp", seeds=(42,))
    text = proto.read_text()
    old = 'receiver_template = "Context: {context}\\nQ: {question}\\nA:"'
    assert old in text
    proto.write_text(text.replace(old, 'receiver_template = "Q: {question}\\nA:"'))
    out = tmp_path / "out"
    run_protocol(
        str(proto), out, conditions=["no_inject", "last_token_causal_replace"], progress=False
    )
    f = load_result_file(out / "h1_last_token_causal_replace_fwd_seed42.json")
    assert f.injection["mode"] == "last_token_replace"
    assert f.injection["translator_objective"] == "receiver_answer_nll"
    assert f.raw["translator"]["method"] == "causal_last_token_replace"
    ckpt = out / f.raw["checkpoint"]
    assert "causal_last_token_replace-" in ckpt.name
    assert load_translator(ckpt).config.method == "causal_last_token_replace"
    # the receiver read the context-free prompt: shorter than the sender's
    assert all(r["prompt_len_b"] < r["prompt_len_a"] for r in f.per_sample)
    assert "token_ids_match" not in f.per_sample[0]  # not a sequence-level condition
    checks = {c.name: c for c in validate([out], load_protocol(proto)).checks}
    assert checks["extension_files"].passed, checks["extension_files"].detail
