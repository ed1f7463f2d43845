"""Ramesh & Li's (k, j) layer search as a table and a heatmap, read from result files.

Every ``rl_*`` result file records the grid its map kind was chosen from
(``ramesh_li.layer_search``: the selection split, the score of every sender block k and
receiver block j, the chosen pair), so the torch-free half draws it without the models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from harness.analysis.results import ResultSet

__all__ = ["fig_layer_search", "layer_search_markdown", "layer_search_tables"]

_TITLES = {
    "raw_map": "their W (least squares, raw states)",
    "coords": "no map: last min(d_A, d_B) coordinates",
}


def layer_search_tables(results: ResultSet) -> dict[str, dict[str, Any]]:
    """Map kind (``raw_map``, ``coords``) -> its layer-search record (first fwd file)."""
    out: dict[str, dict[str, Any]] = {}
    for f in results:
        rl = f.raw.get("ramesh_li")
        if f.direction != "fwd" or not isinstance(rl, dict):
            continue
        search = rl.get("layer_search")
        if isinstance(search, dict) and search.get("kind") not in out:
            out[str(search["kind"])] = search
    return dict(sorted(out.items(), key=lambda kv: kv[0] != "raw_map"))  # their W first


def fig_layer_search(
    tables: dict[str, dict[str, Any]], path: str | os.PathLike[str], title: str
) -> Path:
    """One heatmap per map kind: selection-split accuracy of replace at every (k, j), the
    chosen pair boxed, the no-injection accuracy in the panel title."""
    kinds = list(tables)
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        t = tables[kind]
        acc = [[100 * v for v in row] for row in t["accuracy"]]
        im = ax.imshow(acc, cmap="viridis", aspect="auto", origin="lower")
        k, j = t["chosen"]
        ax.add_patch(plt.Rectangle((j - 0.5, k - 0.5), 1, 1, fill=False, ec="#e53e3e", lw=2.2))
        for r, row in enumerate(acc):
            for c, v in enumerate(row):
                ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=6.5, color="w")
        ax.set_xticks(
            range(len(t["receiver_sites"])), [s.rsplit(".", 1)[-1] for s in t["receiver_sites"]]
        )
        ax.set_yticks(
            range(len(t["sender_sites"])), [s.rsplit(".", 1)[-1] for s in t["sender_sites"]]
        )
        ax.set_xlabel("receiver block j")
        ax.set_ylabel("sender block k")
        ax.set_title(
            f"{_TITLES.get(kind, kind)}\nno injection {100 * t['no_inject_accuracy']:.1f}%, "
            f"chosen k={k}, j={j}",
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, label="first answer token accuracy (%)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def layer_search_markdown(tables: dict[str, dict[str, Any]]) -> str:
    """The grids as Markdown tables (rows k, columns j, accuracy in %; chosen in bold)."""
    parts = []
    for kind, t in tables.items():
        k0, j0 = t["chosen"]
        cols = [s.rsplit(".", 1)[-1] for s in t["receiver_sites"]]
        lines = [
            f"**{_TITLES.get(kind, kind)}** (replace; {t['n_rows']} rows of {t['split']}; "
            f"no injection {100 * t['no_inject_accuracy']:.1f}%)",
            "",
            "| k \\ j | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for k, row in enumerate(t["accuracy"]):
            cells = [
                f"**{100 * v:.1f}**" if (k, j) == (k0, j0) else f"{100 * v:.1f}"
                for j, v in enumerate(row)
            ]
            lines.append(
                f"| {t['sender_sites'][k].rsplit('.', 1)[-1]} | " + " | ".join(cells) + " |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
