from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.evalset import load_evalset
from harness.errors import HarnessError
from tests.helpers import EVAL, needs_artifact


@needs_artifact
def test_paper_eval_loads_with_its_frozen_hash() -> None:
    ev = load_evalset(EVAL, "504e077cf17433e22967c86e98d321532d4e803dbe24d96af14c7e8ecdd0dcbb")
    assert (
        len(ev) == 396 and ev.rows[0].sample_id == "mh_clean_000000" and ev.rows[0].answer == "Asia"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ('{"context": "a", "question": "b"}\n', "missing or non-string field 'answer'"),
        ('{"context": "a", "question": "b", "answer": "c"}\n{bad json\n', ":2: not valid JSON"),
        ("[1, 2]\n", "a row must be a JSON object"),
    ],
)
def test_malformed_eval_files_are_one_line_errors(
    tmp_path: Path, content: str, message: str
) -> None:
    p = tmp_path / "eval.jsonl"
    p.write_text(content)
    with pytest.raises(HarnessError) as err:
        load_evalset(p)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_hash_mismatch_names_both_hashes(tmp_path: Path) -> None:
    p = tmp_path / "eval.jsonl"
    p.write_text('{"context": "a", "question": "b", "answer": "c"}\n')
    with pytest.raises(HarnessError, match="the protocol expects 000000000000"):
        load_evalset(p, "0" * 64)


@settings(max_examples=50)
@given(st.binary(max_size=300))
def test_fuzzed_eval_bytes_give_a_documented_error_or_rows(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "eval.jsonl"
        p.write_bytes(data)
        try:
            ev = load_evalset(p)
        except HarnessError:
            return
        except UnicodeDecodeError:
            pytest.fail("non-UTF-8 input must be a HarnessError")
        assert len(ev) > 0
