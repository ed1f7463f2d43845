"""Hostile inputs through the real command line (issue #30): files that try to run code,
output that tries to drive the terminal, links and device nodes as output paths, settings
beyond what the machine can do, model folders that are not the model they say, names used as
paths, and inputs that would hang. Each gives one ``error:`` line (or safe output), no
traceback, and no side effect. Runs use the tiny random GPT-NeoX pair of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.io import atomic_write_json
from harness.text import printable
from tests.model_fixtures import make_protocol
from tests.test_errors import cli, expect, run_cli

ROOT = Path(__file__).resolve().parent.parent


# -- files that try to run code ------------------------------------------------------------


class _Payload:
    """Unpickling this creates ``marker`` (a folder): proof that the file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _malicious_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"model": _Payload(marker), "opt": {}, "step": 1}, protocol=2))


def _malicious_torch_file(path: Path, marker: Path) -> None:
    """A ``torch.save`` zip whose pickle holds the payload (the format of a ``.pt``/``.bin``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker), "opt": {}, "step": 1}, path)


@pytest.mark.parametrize(
    "writer", [_malicious_pickle, _malicious_torch_file], ids=["pickle", "zip"]
)
def test_a_malicious_training_checkpoint_is_refused_without_running_it(
    writer, tmp_path, capsys
) -> None:
    marker = tmp_path / "PWNED"
    writer(tmp_path / "ckpt" / "sender.pt", marker)
    argv = ["mini", "train", "--which", "sender", "--steps", "1", "--resume", "--threads", "1"]
    argv += ["--ckpt-dir", tmp_path / "ckpt", "--out-dir", tmp_path / "models"]
    expect(cli(capsys, *argv), r"checkpoint .*sender\.pt is not a data-only training checkpoint")
    assert not marker.exists()
    assert not (tmp_path / "models").exists()


def test_a_model_folder_with_a_malicious_pickle_is_refused_without_running_it(
    pair, tmp_path, capsys
) -> None:
    marker = tmp_path / "PWNED"
    shutil.copytree(pair / "receiver", tmp_path / "evil", ignore=shutil.ignore_patterns("*.st*"))
    for f in (tmp_path / "evil").glob("*.safetensors"):
        f.unlink()
    _malicious_torch_file(tmp_path / "evil" / "pytorch_model.bin", marker)
    proto = make_protocol(pair, tmp_path, receiver=str(tmp_path / "evil"))
    expect(run_cli(capsys, proto, tmp_path / "o"), r"model folder .*evil")
    assert not marker.exists()


def _poison_cache(out: Path, pattern: str, marker: Path) -> list[Path]:
    victims = sorted((out / ".cache").glob(pattern))
    assert victims, pattern
    for v in victims:
        _malicious_torch_file(v, marker)
    return victims


@pytest.mark.parametrize(
    "pattern",
    ["activations/*/*.safetensors", "translators/*/*.safetensors", "translators/*/*.json"],
    ids=["activations", "translator", "translator-metrics"],
)
def test_a_malicious_cache_file_never_runs_code(results, tmp_path, capsys, pattern) -> None:
    proto, src = results
    out = tmp_path / "out"
    shutil.copytree(src, out)
    (out / "h1_replace_fwd_seed42.json").unlink()
    marker = tmp_path / "PWNED"
    victims = _poison_cache(out, pattern, marker)
    poisoned = {v: v.read_bytes() for v in victims}
    code, line = run_cli(capsys, proto, out, "--conditions", "no_inject,nl_relay,replace")
    assert not marker.exists()
    # Refused in one line, or read, found not to be data and recomputed (the file replaced):
    # never unpickled.
    assert (code == 2 and line) or (code == 0 and (out / "h1_replace_fwd_seed42.json").is_file())
    if code == 0:
        assert any(not v.exists() or v.read_bytes() != b for v, b in poisoned.items())


def test_malicious_result_status_eval_and_protocol_files_are_only_read_as_data(
    pair, results, tmp_path, capsys
) -> None:
    _, src = results
    marker = tmp_path / "PWNED"
    out = tmp_path / "r"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".cache"))
    _malicious_pickle(out / "h1_replace_fwd_seed42.json", marker)
    expect(cli(capsys, "summarize", out), r"h1_replace_fwd_seed42\.json")
    _malicious_pickle(tmp_path / "status.json", marker)
    expect(cli(capsys, "claims", "--status", tmp_path / "status.json"), r"status\.json")
    _malicious_pickle(tmp_path / "evil.toml", marker)
    expect(cli(capsys, "validate-protocol", tmp_path / "evil.toml"), r"evil\.toml")
    evil = pickle.dumps(_Payload(marker))
    evil_eval = make_protocol(pair, tmp_path / "p", eval_text=evil, eval_sha=None)
    expect(run_cli(capsys, evil_eval, tmp_path / "o"), r"eval\.jsonl")
    assert not marker.exists()


def test_no_loader_in_the_tree_can_unpickle() -> None:
    """Every ``torch.load`` passes ``weights_only=True``; nothing imports pickle to load."""
    bad = []
    for path in (ROOT / "harness").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\((?P<args>[^)]*)\)", text):
            if "weights_only=True" not in m.group("args"):
                bad.append(f"{path.name}: {m.group(0)}")
        for needle in ("pickle.load", "allow_pickle=True", "weights_only=False", "np.load("):
            if needle in text:
                bad.append(f"{path.name}: {needle}")
        if "trust_remote_code=True" in text:
            bad.append(f"{path.name}: trust_remote_code=True")
    assert not bad, bad


# -- output that a terminal would execute -----------------------------------------------------

ESC = "\x1b[2J\x1b[1;32mALL CLAIMS PASS\x1b[0m"


def test_printable_escapes_every_control_character_and_keeps_text() -> None:
    assert printable(ESC) == "\\x1b[2J\\x1b[1;32mALL CLAIMS PASS\\x1b[0m"
    assert printable("row\roverwritten") == "row\\x0doverwritten"
    assert printable("a\nb\tc") == "a\\x0ab\\x09c"
    assert printable("a\nb\tc", keep_newlines=True) == "a\nb\\x09c"
    assert printable("\u202egnp.exe \x9b2J \x7f") == "\\u202egnp.exe \\x9b2J \\x7f"
    assert printable("Zürich → 東京 ✓") == "Zürich → 東京 ✓"


def test_log_lines_and_usage_errors_escape_control_characters(capsys) -> None:
    import io
    import logging

    from harness.text import log_handler

    handler = log_handler("%(levelname)s %(message)s")
    handler.setStream(stream := io.StringIO())
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "in %s", ("a\x1b[2J\rb",), None)
    handler.handle(record)
    assert stream.getvalue() == "WARNING in a\\x1b[2J\\x0db\n"
    with pytest.raises(SystemExit):
        main(["summarize", "--bogus\x1b[31m"])
    err = capsys.readouterr().err
    assert "--bogus\\x1b[31m" in err
    _no_controls(err)


def _hostile_results(src: Path, dest: Path) -> Path:
    """A copy of the finished run with an ANSI escape in every prediction and a carriage
    return in a condition name and a file name."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".cache"))
    for f in dest.glob("*.json"):
        data = json.loads(f.read_text(encoding="utf-8"))
        for r in data["per_sample"]:
            r["prediction"] = ESC + " " + r["gold"] + "\r"
        atomic_write_json(f, data)
    f = dest / "h1_replace_fwd_seed42.json"
    data = json.loads(f.read_text(encoding="utf-8"))
    data["condition"] = "replace\rALL CLAIMS PASS"
    atomic_write_json(dest / "h1_replace\rx_fwd_seed42.json", data)
    f.unlink()
    return dest


def _no_controls(text: str) -> None:
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", text), repr(text[:300])


@pytest.mark.parametrize("command", ["summarize", "audit", "validate", "compare"])
def test_control_characters_from_result_files_reach_the_terminal_escaped(
    results, tmp_path, capsys, command
) -> None:
    proto, src = results
    out = _hostile_results(src, tmp_path / "r")
    code = main([command, str(out), "--protocol", str(proto)])
    captured = capsys.readouterr()
    assert code in (0, 1, 2)
    _no_controls(captured.out)
    _no_controls(captured.err)
    assert "\\x1b" in captured.out + captured.err or "\\x0d" in captured.out + captured.err


def test_an_error_line_naming_a_hostile_path_is_escaped(tmp_path, capsys) -> None:
    code, line = cli(capsys, "summarize", tmp_path / "no\x1b[2Jpe\rx")
    assert code == 2 and "no\\x1b[2Jpe\\x0dx" in line
    _no_controls(line)


def test_the_claim_table_escapes_control_characters_in_the_status_file(tmp_path, capsys) -> None:
    from tests.helpers import catalog_of, claims_in_checkout

    status = tmp_path / "claims_status.json"
    entry = {"outcome": "failed", "detail": ESC + "\rPASS\nrow", "run": "r1"}
    known = claims_in_checkout()
    claims = {c.name: {"mini": entry, "evil\x1b[31m": entry} for c in known}
    status.write_text(
        json.dumps({"claims": claims, "latest_run": "r1", "catalog": catalog_of(known)}),
        encoding="utf-8",
    )
    for markdown in ([], ["--markdown"]):
        assert main(["claims", "--status", str(status), *markdown]) == 0
        captured = capsys.readouterr()
        _no_controls(captured.out)
        assert "\\x1b[2J" in captured.out and "evil\\x1b[31m" in captured.out


# -- writing through a link, never onto a device -------------------------------------------


def _regular(path: Path) -> bool:
    import stat

    return stat.S_ISREG(os.lstat(path).st_mode)


def test_json_through_a_symlink_replaces_the_target_and_keeps_the_link(
    results, tmp_path, capsys
) -> None:
    _, src = results
    target = tmp_path / "elsewhere" / "summary.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert cli(capsys, "summarize", src, "--json", link) == (0, "")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["rows"]
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "new" / "made.json")
    assert cli(capsys, "summarize", src, "--json", dangling) == (0, "")
    assert dangling.is_symlink() and json.loads((tmp_path / "new" / "made.json").read_text())


@pytest.mark.parametrize("kind", ["fifo", "link-to-fifo", "dev-null", "link-to-dev-null"])
def test_json_onto_a_device_or_fifo_is_refused_before_any_work(
    results, tmp_path, capsys, kind
) -> None:
    _, src = results
    node = tmp_path / "fifo"
    if "fifo" in kind:
        os.mkfifo(node)
    else:
        node = Path(os.devnull)
    path = node
    if kind.startswith("link"):
        path = tmp_path / "link.json"
        path.symlink_to(node)
    expect(cli(capsys, "summarize", src, "--json", path), r"--json .* is not a regular file")
    assert not _regular(node)
    assert path.is_symlink() == kind.startswith("link")


def test_figures_write_through_links_and_refuse_a_fifo(results, tmp_path, capsys) -> None:
    proto, src = results
    out = tmp_path / "figs"
    out.mkdir()
    target = tmp_path / "kept.png"
    (out / "fig2_word_boundary_by_condition.png").symlink_to(target)
    code, line = cli(capsys, "figures", src, "--protocol", proto, "--out", out)
    assert code == 0, line
    assert (out / "fig2_word_boundary_by_condition.png").is_symlink()
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))
    (out / "fig5_norm_mismatch.png").unlink()
    os.mkfifo(out / "fig5_norm_mismatch.png")
    expect(
        cli(capsys, "figures", src, "--protocol", proto, "--out", out),
        r"fig5_norm_mismatch\.png is not a regular file",
    )
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not _regular(out / "fig5_norm_mismatch.png")


def test_out_and_claims_status_onto_a_device_are_refused(tmp_path, capsys) -> None:
    expect(
        cli(capsys, "report", "--out", os.devnull, "--source", "paper"),
        r"--out /dev/null is not a folder \(a device",
    )
    os.mkfifo(tmp_path / "status.json")
    import subprocess

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "claims",
            "--source",
            "paper",
            "-q",
            "-p",
            "no:randomly",
            "--claims-status",
            str(tmp_path / "status.json"),
            "--collect-only",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "--claims-status" in proc.stderr and "not a regular file" in proc.stderr, proc.stderr
    assert not _regular(tmp_path / "status.json")


# -- settings beyond what the machine can do: one line before any work ----------------------


def _huge_norms(src: Path, dest: Path, value: float) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".cache"))
    f = dest / "h1_replace_fwd_seed42.json"
    data = json.loads(f.read_text(encoding="utf-8"))
    for r in data["per_sample"]:
        for k in ("translated_norm_mean", "b_hidden_norm_mean", "injected_norm_mean"):
            r[k] = value
    f.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
    return dest


@pytest.mark.parametrize("value", [1e308, float("inf"), float("nan"), -3.0], ids=str)
def test_figures_survive_huge_and_non_finite_norms(results, tmp_path, capsys, value) -> None:
    _, src = results
    folder = _huge_norms(src, tmp_path / "r", value)
    code, line = cli(capsys, "figures", folder, "--out", tmp_path / "figs")
    assert code == 0, line
    assert (tmp_path / "figs" / "fig5_norm_mismatch.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_result_folder_holding_an_endless_file_is_refused_not_read(
    results, tmp_path, capsys, kind
) -> None:
    _, src = results
    out = tmp_path / "r"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".cache"))
    endless = out / "h1_additive_fwd_seed42.json"
    if kind == "fifo":
        os.mkfifo(endless)
    else:
        endless.symlink_to("/dev/zero")
    expect(cli(capsys, "summarize", out), r"h1_additive_fwd_seed42\.json is not a regular file")
    code = main(["validate", str(out)])
    report = capsys.readouterr().out
    assert code == 1 and "h1_additive_fwd_seed42.json is not a regular file" in report


def test_a_result_file_larger_than_any_input_is_refused_before_it_is_read(
    results, tmp_path, capsys
) -> None:
    from harness.io import MAX_READ_BYTES

    _, src = results
    out = tmp_path / "r"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".cache"))
    big = out / "h1_additive_fwd_seed42.json"
    with open(big, "wb") as fh:  # sparse: takes no disk space
        fh.truncate(MAX_READ_BYTES + 1)
    expect(cli(capsys, "summarize", out), r"h1_additive_fwd_seed42\.json is \d+ bytes, more than")


def test_bench_with_an_unwritable_out_stops_before_any_timing(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    code, line = cli(capsys, "bench", "--out", tmp_path / "file" / "bench.json")
    assert code == 2 and "--out" in line and "bench.json" in line, line
    code, line = cli(capsys, "bench", "--out", tmp_path / "b.json", "--batch", "1000000000")
    assert code == 2 and "--batch 1000000000" in line, line
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            ("max_new_tokens = 6", "max_new_tokens = 1000000000"),
            r"decoding\.max_new_tokens = 1000000000: must be an integer >= 1 and <= 8192",
        ),
        (("max_length = 256", "max_length = 99999999999"), r"prompt\.max_length = 99999999999"),
        (
            ("bootstrap_resamples = 100", "bootstrap_resamples = 1000000000"),
            r"stats\.bootstrap_resamples = 1000000000: .*<= 100000",
        ),
        (("batch_size = 4\n", "batch_size = 1000000000\n"), r"run\.batch_size = 1000000000"),
        (("epochs = 3", "epochs = 1000000000"), r"translator\.epochs = 1000000000"),
        (("steps = 6", "steps = 1000000000"), r"causal\.steps = 1000000000"),
    ],
    ids=["max-new-tokens", "max-length", "bootstrap", "batch", "epochs", "causal-steps"],
)
def test_numbers_beyond_what_a_run_can_do_are_refused_before_any_work(
    pair, tmp_path, capsys, edit, pattern
) -> None:
    proto = make_protocol(pair, tmp_path, edit=edit)
    expect(run_cli(capsys, proto, tmp_path / "o"), pattern)
    assert not list((tmp_path / "o").glob("*"))
    code, line = cli(capsys, "compare", tmp_path, "--protocol", proto)
    assert code == 2 and re.search(pattern, line), line


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--device", "meta"], r"--device meta holds no weights"),
        (["--device", "mps"], r"--device mps: MPS is not available here|--device mps"),
        (["--device", "cuda:99"], r"--device cuda:99"),
        (["--threads", "100000"], r"--threads 100000: this machine has \d+ CPU"),
        (["--threads", "0"], r"--threads 0: this machine has"),
    ],
    ids=["meta", "mps", "cuda-99", "threads-huge", "threads-zero"],
)
def test_a_device_or_thread_count_the_machine_lacks_is_one_line(
    results, tmp_path, capsys, argv, pattern
) -> None:
    import harness.model.models as models

    proto, _ = results
    if argv[1] == "mps" and torch.backends.mps.is_available():  # pragma: no cover - a Mac
        pytest.skip("MPS is available on this machine")
    if argv[1] == "cuda:99" and torch.cuda.device_count() > 99:  # pragma: no cover
        pytest.skip("this machine has 100 GPUs")
    loaded = []
    orig = models.load_model
    models.load_model = lambda *a, **k: loaded.append(a) or orig(*a, **k)
    try:
        expect(run_cli(capsys, proto, tmp_path / "o", *argv), pattern)
        train_argv = ["mini", "train", "--which", "sender", "--steps", "1", *argv]
        expect(cli(capsys, *train_argv, "--out-dir", tmp_path / "m"), pattern)
    finally:
        models.load_model = orig
    assert not loaded and not list((tmp_path / "o").glob("*")) and not (tmp_path / "m").exists()


# -- a model folder that is not the model it says --------------------------------------------


def _edit_config(pair: Path, dest: Path, **changes) -> Path:
    shutil.copytree(pair / "receiver", dest)
    cfg = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    cfg.update(changes)
    (dest / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return dest


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"num_hidden_layers": 3}, r"weight\(s\) in the weights but not in the model"),
        ({"num_hidden_layers": 8}, r"weight\(s\) missing from the weights"),
        (
            {
                "model_type": "gpt2",
                "architectures": ["GPT2LMHeadModel"],
                "n_embd": 48,
                "n_layer": 6,
                "n_head": 4,
            },
            r"weight\(s\) (missing|in the weights)",
        ),
    ],
    ids=["fewer-layers", "more-layers", "other-architecture"],
)
def test_a_config_that_does_not_describe_the_weights_is_refused(
    pair, tmp_path, capsys, changes, pattern
) -> None:
    folder = _edit_config(pair, tmp_path / "liar", **changes)
    proto = make_protocol(pair, tmp_path, receiver=str(folder))
    expect(run_cli(capsys, proto, tmp_path / "o"), rf"model folder .*liar: \d+ {pattern}")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.json"))


def test_a_model_folder_with_custom_code_is_never_run_and_never_prompts(
    pair, tmp_path, capsys, monkeypatch
) -> None:
    marker = tmp_path / "PWNED"
    folder = _edit_config(
        pair,
        tmp_path / "custom",
        model_type="evil",
        architectures=["EvilForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
        },
    )
    code = f"import os\nos.mkdir({str(marker)!r})\n"
    (folder / "configuration_evil.py").write_text(code, encoding="utf-8")
    (folder / "modeling_evil.py").write_text(code, encoding="utf-8")
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("asked the user"))
    proto = make_protocol(pair, tmp_path, receiver=str(folder))
    expect(run_cli(capsys, proto, tmp_path / "o"), r"model folder .*custom")
    assert not marker.exists()


# -- names used as paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../../escape", "a/b", "..", ".hidden", "x" * 65, "", "tab\tname"]
)
def test_a_protocol_name_that_is_not_a_plain_name_is_refused(pair, tmp_path, capsys, name) -> None:
    proto = make_protocol(pair, tmp_path, edit=('name = "tiny"', f"name = {json.dumps(name)}"))
    expect(run_cli(capsys, proto, tmp_path / "o"), r"name = .*: must be a plain name")
    code, line = cli(capsys, "validate-protocol", proto)
    assert (code == 2 and "must be a plain name" in line) or code == 1


def test_a_copied_protocol_named_mini_gets_its_own_source_identity(tmp_path) -> None:
    from harness.protocol import PROTOCOL_DIR, load_protocol
    from harness.sources import source_spec

    text = (PROTOCOL_DIR / "mini.toml").read_text(encoding="utf-8")
    assert source_spec(str(PROTOCOL_DIR / "mini.toml")).name == "mini"  # the protocol itself
    copy = tmp_path / "mini.toml"
    copy.write_text(text.replace("bootstrap_resamples = 5000", "bootstrap_resamples = 4000"))
    spec = source_spec(str(copy))
    assert spec.name == f"mini@{load_protocol(copy).hash[:8]}" and spec.name != "mini"
    paper = tmp_path / "paper.toml"
    paper.write_text((PROTOCOL_DIR / "paper.toml").read_text(encoding="utf-8"))
    assert source_spec(str(paper)).name.startswith("paper@")  # never the artifact's column


def test_report_with_a_source_path_writes_only_inside_out(
    pair, tmp_path, capsys, monkeypatch
) -> None:
    proto = make_protocol(pair, tmp_path / "p")
    text = re.sub(
        r"\nconditions = \[.*\]\n", '\nconditions = ["no_inject", "nl_relay"]\n', proto.read_text()
    )
    text = re.sub(r"(strict|appendix)_conditions = \[.*\]", r"\1_conditions = []", text)
    (tmp_path / "x.toml").write_text(text, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    before = set(tmp_path.rglob("*"))
    out = work / "out"
    code, line = cli(capsys, "report", "--out", out, "--source", "../x.toml")
    assert code == 0, line
    cache = tmp_path / "cache"
    made = {p for p in set(tmp_path.rglob("*")) - before if cache != p and cache not in p.parents}
    assert made and all(p == out or out in p.parents for p in made), sorted(made - {out})
    assert (out / "tiny" / "summary.json").is_file()


# -- Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_stops_every_claims_worker_at_once_and_a_rerun_completes_the_grid(
    tmp_path, monkeypatch
) -> None:
    """SIGINT to the process group of ``pytest claims -n 2`` while a cold grid is being
    computed (the first result file just written): the controller and both workers are gone
    within 10 s, the workers within 5 s (measured: workers 0.6 s, controller 3.3 s, on 2 busy
    cores; before, each worker spent 10-12 s in pytest's teardown), the cache entry
    is left unsealed with only complete files, and a rerun completes and seals it."""
    import signal
    import subprocess
    import time

    from harness.analysis.results import load_result_file
    from harness.analysis.validate import validate
    from harness.protocol import load_protocol
    from harness.sources import load_source
    from tests.model_fixtures import build_tiny_experiment

    proto = build_tiny_experiment(tmp_path / "exp", seeds=(42, 123, 456))
    text = re.sub(
        r"\nconditions = \[.*\]\n",
        '\nconditions = ["no_inject", "nl_relay", "additive", "replace", "scale_corrected", '
        '"best_alpha", "same_norm_random"]\n',
        proto.read_text(encoding="utf-8"),
    )
    text = re.sub(r"(strict|appendix)_conditions = \[.*\]", r"\1_conditions = []", text)
    proto.write_text(text.replace('name = "tiny"', 'name = "sigint"'), encoding="utf-8")
    cache = tmp_path / "cache"
    env = {**os.environ, "HARNESS_CACHE": str(cache)}
    argv = [sys.executable, "-m", "pytest", "claims", "-n", "2", "-q", "-p", "no:randomly"]
    argv += ["--source", str(proto), "--claims-status", str(tmp_path / "status.json")]

    def default_sigint() -> None:  # a background shell would start it with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    log = open(tmp_path / "log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=default_sigint,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def group() -> list[str]:
        found = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
        return [p for p in found.stdout.split() if p != str(proc.pid)]

    try:
        t0 = time.monotonic()
        while not list(cache.glob("sigint/*/results/h1_*.json")):
            assert proc.poll() is None, (tmp_path / "log").read_text()[-2000:]
            assert time.monotonic() - t0 < 300, "no result file after 300 s"
            time.sleep(0.05)
        assert len(group()) >= 2  # both workers are computing the grid
        os.killpg(proc.pid, signal.SIGINT)
        t_int = time.monotonic()
        workers_gone = None
        while (proc.poll() is None or group()) and time.monotonic() - t_int < 30:
            if workers_gone is None and not group():
                workers_gone = time.monotonic() - t_int
            time.sleep(0.05)
        stopped = time.monotonic() - t_int
        workers_gone = stopped if workers_gone is None else workers_gone
    finally:
        if proc.poll() is None or group():
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert workers_gone < 5, f"the workers took {workers_gone:.1f} s to stop (was 10-12 s)"
    assert stopped < 10, f"the process group took {stopped:.1f} s to stop"
    assert not group(), f"stray processes: {group()}"
    (entry,) = cache.glob("sigint/*")
    assert not (entry / "complete.json").exists()  # never sealed: a later run does not trust it
    for f in (entry / "results").glob("h1_*.json"):
        load_result_file(f)  # every file there is complete (written to a temp name, renamed)
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    src = load_source(str(proto))  # the rerun: resumes, validates, seals
    assert (entry / "complete.json").is_file()
    report = validate(src.result_dirs, load_protocol(proto), include_strict=True)
    assert report.blocking_passed and report.present_files == report.expected_files == 17
