"""Every bad input gets one clear line and exit code 2 (through the real command line).

Each test feeds one bad input to ``python -m harness`` (``harness.cli.main`` in process, a
subprocess for a few) and checks the exit code and the ``error: ...`` line: what is wrong,
where, and how to fix it. Runs use a tiny random GPT-NeoX pair saved into a temp folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.errors import HarnessError
from harness.model.models import block_index, resolve_block
from harness.model.translator import Translator, load_translator, save_translator
from tests.helpers import ARTIFACT
from tests.model_fixtures import EVAL_ROWS, build_char_tokenizer, make_protocol

ROOT = Path(__file__).resolve().parent.parent


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the command line in process -> (exit code, the one ``error:`` line or '')."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) <= 1, err
    return code, errors[0] if errors else ""


def run_cli(capsys, protocol: Path, out: Path, *extra: str) -> tuple[int, str]:
    return cli(
        capsys,
        "run",
        "--protocol",
        protocol,
        "--out",
        out,
        "--no-progress",
        "--limit",
        "3",
        *extra,
    )


def expect(code_err: tuple[int, str], pattern: str, code: int = 2) -> None:
    got_code, line = code_err
    assert got_code == code, line
    assert re.search(pattern, line), line
    assert " -- " in line, f"no fix given: {line}"


# -- the eval file -----------------------------------------------------------------------


def test_a_missing_eval_file_is_named_with_the_protocol_key_to_fix(pair, tmp_path, capsys):
    proto = make_protocol(pair, tmp_path, edit=(str(pair / "eval.jsonl"), "nowhere.jsonl"))
    expect(
        run_cli(capsys, proto, tmp_path / "o"), r"eval file not found: .*nowhere\.jsonl.*eval\.path"
    )


GOOD = json.dumps(EVAL_ROWS[0])


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (GOOD + "\n{not json\n", r"eval\.jsonl:2: not valid JSON .*fix or regenerate"),
        (GOOD + '\n{"context": "c", "question": "q"}\n', r"eval\.jsonl:2: missing .* 'answer'"),
        (GOOD + '\n{"context": "c", "question": 3, "answer": "a"}\n', r":2: .*'question'"),
        ("", r"eval file .*eval\.jsonl is empty"),
        ("\n\n  \n", r"eval file .*eval\.jsonl is empty"),
        (GOOD + "\n[1, 2]\n", r"eval\.jsonl:2: a row must be a JSON object"),
        (GOOD + "\n" + GOOD + "\n", r"duplicate sample ids"),
        (b'{"context": "\xff"}\n', r"not UTF-8 text \(byte \d+\).*re-encode"),
        ("9" * 5000 + "\n", r"eval\.jsonl:1: not valid JSON"),
    ],
    ids=[
        "bad-json",
        "missing-field",
        "non-string-field",
        "empty-file",
        "blank-lines-only",
        "not-an-object",
        "duplicate-ids",
        "not-utf8",
        "monster-number",
    ],
)
def test_a_malformed_eval_file_names_file_line_and_fix(pair, tmp_path, capsys, text, pattern):
    proto = make_protocol(pair, tmp_path, eval_text=text)
    expect(run_cli(capsys, proto, tmp_path / "o"), pattern)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.json"))


def test_an_eval_file_with_another_sha256_is_refused(pair, tmp_path, capsys):
    proto = make_protocol(pair, tmp_path, eval_sha="0" * 64)
    expect(
        run_cli(capsys, proto, tmp_path / "o"),
        r"eval file .* has SHA-256 [0-9a-f]{12}\.\.\., the protocol expects 000000000000\.\.\. "
        r"-- use the frozen eval file, or update eval\.sha256",
    )


# -- the protocol ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            ("relative_depth = 0.67", "relative_dept = 0.67"),
            r"unknown protocol key models\.relative_dept -- check the spelling; allowed keys in \[models\]",
        ),
        (
            ("[audit]", "[audits]"),
            r"unknown protocol key 'audits' in .*tiny\.toml -- allowed top-level keys",
        ),
        (("max_length = 256", 'max_length = "256"'), r"prompt\.max_length must be int, got '256'"),
        (("do_sample = false", "do_sample = 0"), r"decoding\.do_sample must be true or false"),
        (("seeds = [42]", "seeds = 42"), r"run\.seeds must be a list"),
        (("ridge = 0.001\n", ""), r"missing protocol key translator\.ridge -- add it"),
        (("[stats]", "[stats"), r"malformed protocol .*tiny\.toml.* -- fix the TOML syntax"),
        (
            ('"no_inject", "nl_relay"', '"no_injection", "nl_relay"'),
            r"run\.conditions has 'no_injection': must be one of .* -- correct the value",
        ),
        (
            ("relative_depth = 0.67", "relative_depth = 1.5"),
            r"models\.relative_depth = 1\.5: must be \(0, 1\)",
        ),
        (
            ("relative_depth = 0.67", "relative_depth = 0"),
            r"models\.relative_depth = 0\.0: must be \(0, 1\)",
        ),
    ],
    ids=[
        "typo-key",
        "typo-section",
        "wrong-type",
        "bool-as-int",
        "scalar-for-list",
        "missing-key",
        "bad-toml",
        "unknown-condition",
        "depth-above-1",
        "depth-zero",
    ],
)
def test_a_bad_protocol_is_refused_naming_the_key(pair, tmp_path, capsys, edit, pattern):
    proto = make_protocol(pair, tmp_path, edit=edit)
    code, line = run_cli(capsys, proto, tmp_path / "o")
    assert code == 2 and re.search(pattern, line), line
    code, line = cli(capsys, "validate", tmp_path, "--protocol", proto)  # every command
    assert code == 2 and re.search(pattern, line), line


def test_an_unknown_protocol_name_lists_the_known_ones(tmp_path, capsys):
    expect(
        cli(capsys, "run", "--protocol", "papr", "--out", tmp_path, "--no-progress"),
        r"protocol not found: papr -- use one of: .*paper",
    )


# -- layers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "n_layers", "pattern"),
    [
        (0.0, 12, r"relative depth 0\.0 is out of range -- use a value in \(0, 1\)"),
        (1.0, 12, r"relative depth 1\.0 is out of range"),
        (-0.3, 12, r"out of range"),
        (float("nan"), 12, r"out of range"),
        (0.5, 0, r"resolves to block 0 of a 0-layer model -- choose a depth"),
    ],
    ids=["zero", "one", "negative", "nan", "no-layers"],
)
def test_a_depth_or_layer_out_of_range_is_refused(depth, n_layers, pattern):
    with pytest.raises(HarnessError, match=pattern):
        block_index(depth, n_layers)


def test_a_model_without_a_known_block_list_is_refused():
    with pytest.raises(HarnessError, match=r"unsupported architecture Linear: no gpt_neox\.layers"):
        resolve_block(torch.nn.Linear(2, 2), 0.67)


# -- models and tokenizers ---------------------------------------------------------------


def test_differing_token_ids_stop_a_sequence_level_condition(pair, tmp_path, capsys):
    own = tmp_path / "own"
    for name in ("sender", "receiver"):
        shutil.copytree(pair / name, own / name)
    build_char_tokenizer(own / "sender", reverse=True)
    build_char_tokenizer(own / "receiver")
    shutil.copy(pair / "train.jsonl", own / "train.jsonl")
    shutil.copy(pair / "eval.jsonl", own / "eval.jsonl")
    proto = make_protocol(own, tmp_path, tokenizer="")
    expect(
        run_cli(capsys, proto, tmp_path / "o", "--conditions", "replace"),
        r"sample t00: sender and receiver token ids differ \(\d+ vs \d+ tokens\).* -- use models "
        r"that share a tokenizer, or run only no_inject and nl_relay",
    )


def test_paper_protocol_without_weights_fails_fast_in_one_line(tmp_path):
    """``python -m harness run --protocol paper`` with an empty HF cache: exit 2, one line."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HARNESS_ALLOW_DOWNLOAD", None)
    argv = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--protocol",
        "paper",
        "--out",
        str(tmp_path / "o"),
    ]
    argv += ["--limit", "2", "--no-progress"] + (["--artifact", str(ARTIFACT)] if ARTIFACT else [])
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    if ARTIFACT:
        assert re.search(
            r"weights for 'EleutherAI/pythia-160m' not found locally .* -- set "
            r"HARNESS_ALLOW_DOWNLOAD=1 .* HF_HOME .*--init random needs no weights",
            lines[0],
        )
    assert not list((tmp_path / "o").glob("*.json")) if (tmp_path / "o").exists() else True


def test_an_unknown_device_or_a_file_as_out_folder_is_one_line(results, tmp_path, capsys):
    proto, _ = results
    expect(
        run_cli(capsys, proto, tmp_path / "o", "--device", "gpu0"),
        r"unknown device 'gpu0' -- use cpu, cuda or cuda:N",
    )
    (tmp_path / "file").write_text("x")
    expect(run_cli(capsys, proto, tmp_path / "file"), r"--out .*file is a file")


def test_the_stand_alone_runner_reports_an_os_error_in_one_line(results, tmp_path, capsys):
    from harness.cli.run import main as runner_main

    proto, _ = results
    (tmp_path / "file").write_text("x")
    code = runner_main(
        ["--protocol", str(proto), "--out", str(tmp_path / "file" / "sub"), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and "Not a directory" in line[0] and " -- check the path" in line[0]


# -- translator checkpoints and numerical failures ---------------------------------------


def _cached(out: Path) -> Path:
    (st,) = sorted((out / ".cache" / "translators").glob("*/*.safetensors"))
    return st


def _rerun_replace(results, tmp_path: Path, translator: Translator | None) -> Path:
    """A copy of the finished run whose cached translator is replaced and replace file removed."""
    src = results[1]
    out = tmp_path / "out"
    shutil.copytree(src, out)
    (out / "h1_replace_fwd_seed42.json").unlink()
    if translator is not None:
        save_translator(translator, _cached(out))
    return out


def _translator(like: Path, ds: int, dr: int, value: float = 0.0) -> Translator:
    """A well-formed translator ``ds -> dr`` with the config and metrics of ``like``."""
    cached = load_translator(like)
    cfg = dataclasses.replace(cached.config, sender_dim=ds, receiver_dim=dr)
    w = torch.full((dr, ds), value) if value else torch.randn(dr, ds)
    return Translator(weight=w, bias=torch.zeros(dr), config=cfg, metrics=dict(cached.metrics))


def test_a_cached_translator_of_other_shapes_is_refused(results, tmp_path, capsys):
    out = _rerun_replace(results, tmp_path, _translator(_cached(results[1]), 5, 7))
    expect(
        run_cli(capsys, results[0], out, "--conditions", "no_inject,nl_relay,replace"),
        r"translator checkpoint .*\.safetensors maps 5 -> 7 dims but the models need 32 -> 48 -- "
        r".*delete the translator cache",
    )
    with pytest.raises(HarnessError, match=r"maps 5 -> 7 dims but the models need 32 -> 7"):
        load_translator(_cached(out), sender_dim=32)


def test_inf_in_the_translator_output_names_site_and_sample(results, tmp_path, capsys):
    out = _rerun_replace(results, tmp_path, _translator(_cached(results[1]), 32, 48, value=3e38))
    expect(
        run_cli(capsys, results[0], out, "--conditions", "no_inject,nl_relay,replace"),
        r"(inf|NaN) in translator output at gpt_neox\.layers\.2 -> gpt_neox\.layers\.4 .* for "
        r"sample t00 -- .*refit",
    )


def test_nan_in_receiver_activations_names_site_and_sample(pair, tmp_path, capsys):
    proto = make_protocol(pair, tmp_path, receiver="receiver_nan")
    code_err = cli(
        capsys,
        "run",
        "--protocol",
        proto,
        "--out",
        tmp_path / "o",
        "--no-progress",
        "--conditions",
        "b_to_b_self_inject",
    )
    expect(
        code_err,
        r"NaN in receiver activations at gpt_neox\.layers\.4 for sample t05 -- .*NaN/inf",
    )


def test_nan_in_sender_activations_names_the_training_prompt(pair, tmp_path, capsys):
    proto = make_protocol(pair, tmp_path, sender="sender_nan")
    expect(
        run_cli(capsys, proto, tmp_path / "o", "--conditions", "replace"),
        r"NaN in sender activations at gpt_neox\.layers\.2 for sample row_000005 "
        r"\(translator training\) -- ",
    )


# -- result files ------------------------------------------------------------------------


def test_a_truncated_result_file_is_named_by_summarize_and_validate(results, tmp_path, capsys):
    proto, src = results
    out = tmp_path / "r"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".cache"))
    victim = out / "h1_replace_fwd_seed42.json"
    victim.write_text(victim.read_text()[:500])
    expect(
        cli(capsys, "summarize", out),
        r"h1_replace_fwd_seed42\.json: truncated or corrupt JSON .* -- delete the file and re-run",
    )
    code = main(["validate", str(out), "--protocol", str(proto)])
    report = capsys.readouterr().out
    assert code == 1 and re.search(r"\[FAIL\] required_fields .*h1_replace_fwd_seed42", report)
    victim.write_text(json.dumps({"condition": "replace"}))  # valid JSON, not a result file
    expect(
        cli(capsys, "compare", out, "--protocol", proto), r"missing required field 'schema_version'"
    )
    expect(
        run_cli(capsys, proto, out, "--conditions", "no_inject,nl_relay,replace"),
        r"cannot resume: .*h1_replace_fwd_seed42\.json: missing required field .* -- delete it",
    )


@pytest.mark.parametrize(
    ("field", "check"),
    [("clean_eval_hash", "clean_eval_hash"), ("protocol_hash", "single_protocol")],
    ids=["eval-hash", "protocol-hash"],
)
def test_a_result_set_mixing_eval_sets_or_protocols_is_refused(
    results, tmp_path, capsys, field, check
):
    proto, src = results
    out = tmp_path / "r"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".cache"))
    victim = out / "h1_nl_relay_fwd_deterministic.json"
    data = json.loads(victim.read_text())
    block = data["config"] if field == "clean_eval_hash" else data["provenance"]
    block[field] = "f" * 16
    victim.write_text(json.dumps(data))
    code = main(["validate", str(out), "--protocol", str(proto)])
    report = capsys.readouterr().out
    assert code == 1 and re.search(rf"\[FAIL\] {check} .*mix 2", report), report
    expect(cli(capsys, "summarize", out), r"result files mix 2 .*ffffffffffff\.\.\. in h1_nl_relay")


def test_an_empty_or_missing_result_folder_is_one_line(tmp_path, capsys):
    expect(cli(capsys, "summarize", tmp_path), r"no result files \(\*\.json\) in the given folders")
    expect(cli(capsys, "summarize", tmp_path / "nope"), r"result directory not found: .*nope")


def test_debug_shows_the_traceback_instead(tmp_path, capsys):
    with pytest.raises(HarnessError, match="result directory not found"):
        main(["--debug", "summarize", str(tmp_path / "nope")])


def _drop_provenance(data: dict) -> None:
    del data["provenance"]


def _other_init(data: dict) -> None:
    data["provenance"]["init"] = "random"


def _other_weights(data: dict) -> None:
    data["provenance"]["inputs"]["receiver_weights"] = "0" * 16


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (_drop_provenance, r"h1_nl_relay_fwd_deterministic\.json has no provenance but h1_"),
        (_other_init, r"mix 2 values of provenance\.init: .*h1_nl_relay_fwd_deterministic\.json"),
        (
            _other_weights,
            r"mix 2 values of provenance\.inputs\.receiver_weights: .*h1_nl_relay_fwd_deterministic",
        ),
    ],
    ids=["file-from-elsewhere", "other-init", "other-weights"],
)
def test_a_result_set_mixing_runs_or_with_a_file_from_elsewhere_is_refused(
    results, tmp_path, capsys, edit, pattern
):
    """A file without provenance among the runner's (from elsewhere), or from a run with
    another init or other weights: validate fails single_protocol, and the commands that
    read the set stop with one line naming the file."""
    proto, src = results
    out = tmp_path / "r"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".cache"))
    victim = out / "h1_nl_relay_fwd_deterministic.json"
    data = json.loads(victim.read_text())
    edit(data)
    victim.write_text(json.dumps(data))
    code = main(["validate", str(out), "--protocol", str(proto)])
    report = capsys.readouterr().out
    assert code == 1 and re.search(r"\[FAIL\] single_protocol .*" + pattern, report), report
    for command in ("summarize", "compare"):
        expect(cli(capsys, command, out, "--protocol", proto), r"not one run's: .*" + pattern)


def test_a_row_outside_the_eval_of_the_protocol_is_refused_by_commands_that_pair_rows(
    results, tmp_path, capsys
):
    """The eval the files name (their clean_eval_hash, here the --protocol's own file) is
    read by every command that pairs rows: an id outside it is one line naming the file."""
    proto, src = results
    out = tmp_path / "r"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".cache"))
    victim = out / "h1_nl_relay_fwd_deterministic.json"
    data = json.loads(victim.read_text())
    data["per_sample"][1]["sample_id"] = "zz99"
    victim.write_text(json.dumps(data))
    for command in ("summarize", "compare", "audit"):
        expect(
            cli(capsys, command, out, "--protocol", proto),
            r"rows cannot be paired: h1_nl_relay_fwd_deterministic\.json: 1 sample ids are not "
            r"in the eval set \(first zz99\) \(eval\.jsonl\)",
        )
