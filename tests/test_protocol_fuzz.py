"""Mutated protocols: every mutation either loads as a protocol the runner can start on, or
is refused with a one-line HarnessError before any work (no other exception, ever)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.protocol import PROTOCOL_DIR, load_protocol, protocol_problems
from harness.spec.jobs import jobs
from tests.strategies import toml_literal, toml_values

BASE = (PROTOCOL_DIR / "mini.toml").read_text(encoding="utf-8")
DATA = tomllib.loads(BASE)
LEAVES = [(sec, key) for sec, table in DATA.items() if isinstance(table, dict) for key in table]


def _mutate(section: str, key: str, value: object) -> str:
    """The mini protocol with one value replaced (the line ``key = ...`` of ``[section]``)."""
    lines = BASE.splitlines()
    current = None
    for i, line in enumerate(lines):
        head = re.match(r"\[(\w+)\]", line)
        if head:
            current = head.group(1)
        elif current == section and re.match(rf"{key}\s*=", line):
            lines[i] = f"{key} = {toml_literal(value)}"
            return "\n".join(lines) + "\n"
    raise AssertionError((section, key))


@settings(max_examples=300, deadline=None)
@given(leaf=st.sampled_from(LEAVES), value=toml_values)
def test_a_mutated_protocol_is_valid_or_refused_before_any_work(
    tmp_path_factory, leaf: tuple[str, str], value: object
) -> None:
    path = Path(tmp_path_factory.mktemp("p")) / "mutated.toml"
    path.write_text(_mutate(*leaf, value), encoding="utf-8")
    try:
        proto = load_protocol(path)
    except HarnessError as exc:
        text = str(exc)
        assert "\n" not in text and text, text
        return
    # accepted: the checks found nothing, and the runner's preparation steps all work
    assert protocol_problems(proto) == []
    grid = jobs(proto, ("primary", "strict", "extension", "appendix"))
    assert grid and len({j.filename for j in grid}) == len(grid)
    p = proto.prompt
    p.template.format(context="c", question="q")
    p.relay_sender_template.format(context="c")
    p.relay_receiver_template.format(relay="r", question="q")
    assert proto.hash
