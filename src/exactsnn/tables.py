"""The results table and the robustness table as Markdown and as HTML for the workflow's report.

The HTML is a fragment with its own scoped style (class ``exactsnn-table``): the same file is
shown in the report's viewer (an iframe) and embedded in the report's front page.  Cells
that show the mapping falling short of exact are highlighted: agreement below 100 %,
deviating spikes (spikes that left the closed-form time, DESIGN §2) above zero, an SNN
accuracy different from the original network's.  The paper's published values are shown
beside ours for the rows whose config gives them (``published:``); none are assumed.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

__all__ = [
    "RESULT_COLUMNS",
    "MAIN_COLUMNS",
    "PUBLISHED_COLUMNS",
    "KNOB_LABELS",
    "results_markdown",
    "results_html",
    "robustness_summary",
    "robustness_html",
    "embedded_image",
]

RESULT_COLUMNS = {
    # column: (header, format); a "%" format is printed without the sign, the header has it
    "dataset": ("Dataset", "{}"),
    "model": ("Model", "{}"),
    "test_samples": ("Test samples", "{:d}"),
    "accuracy_original": ("Original acc. (%)", "{:.2%}"),
    "accuracy_scaled": ("Scaled acc. (%)", "{:.2%}"),
    "accuracy_snn": ("SNN acc. (%)", "{:.2%}"),
    "agreement": ("Agreement (%)", "{:.2%}"),
    "latency": ("Latency (τ_c)", "{:.4g}"),
    "hidden_neurons": ("Hidden neurons", "{:d}"),
    "spikes_per_neuron": ("Spikes / neuron", "{:.4g}"),
    "synaptic_events": ("Synaptic events / sample", "{:.4g}"),
    "relu_macs": ("ReLU MACs / sample", "{:.4g}"),
    "deviating_spikes": ("Deviating spikes", "{:d}"),
    "runtime_s": ("Runtime (s)", "{:.1f}"),
    # the same network with B1 neurons (silence codes zero)
    "accuracy_snn_b1": ("B1 SNN acc. (%)", "{:.2%}"),
    "agreement_b1": ("B1 agreement (%)", "{:.2%}"),
    "spikes_per_neuron_b1": ("B1 spikes / neuron", "{:.4g}"),
    "synaptic_events_b1": ("B1 synaptic events / sample", "{:.4g}"),
    "deviating_spikes_b1": ("B1 deviating spikes", "{:d}"),
}

# The paper's results table: ReLU accuracy, SNN accuracy, agreement; with what says whether
# the SNN was exact here.
MAIN_COLUMNS = ("dataset", "model", "test_samples", "accuracy_original", "accuracy_snn", "agreement",
                "deviating_spikes")

# Published values a config row may give, each shown beside our column of the same name.
PUBLISHED_COLUMNS = ("accuracy_original", "accuracy_snn", "agreement")

KNOB_LABELS = {
    "zeta": "time-window margin ζ (fraction of X_n)",
    "noise_sigma": "spike-time noise σ (τ_c)",
    "alpha_sigma": "α mismatch σ_α (relative to α = 1)",
}

_STYLE = """<style>
.exactsnn-table { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a1a1a; }
.exactsnn-table .scroll { overflow-x: auto; max-width: 100%; }
.exactsnn-table table { border-collapse: collapse; margin: 0.4em 0 0.8em; }
.exactsnn-table th, .exactsnn-table td { padding: 3px 9px; border-bottom: 1px solid #ddd;
  text-align: right; white-space: nowrap; }
.exactsnn-table th { background: #f2f2f2; font-weight: 600; vertical-align: bottom; }
.exactsnn-table td.text, .exactsnn-table th.text { text-align: left; }
.exactsnn-table td.published, .exactsnn-table th.published { color: #555; font-style: italic;
  background: #fafafa; }
.exactsnn-table td.off { background: #fde2e1; color: #8a1c1c; font-weight: 600; }
.exactsnn-table caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.2em; }
.exactsnn-table p { margin: 0.3em 0; }
.exactsnn-table summary { cursor: pointer; }
</style>"""


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _format(value, fmt: str) -> str:
    if _missing(value):
        return "n/a"  # PASS has no labels, so no accuracy
    if fmt == "{:d}":
        value = int(value)
    return fmt.format(value).replace("%", "")


def _short_of_exact(column: str, row: dict) -> bool:
    """Whether this cell shows the mapping falling short of exact."""
    value = row.get(column)
    if _missing(value):
        return False
    if column.startswith("agreement"):
        return value < 1.0
    if column.startswith("deviating_spikes"):
        return value > 0
    if column in ("accuracy_snn", "accuracy_snn_b1"):
        original = row.get("accuracy_original")
        return not _missing(original) and value != original
    return False


def _cell(text: str, classes: list[str], tag: str = "td") -> str:
    attribute = f' class="{" ".join(classes)}"' if classes else ""
    return f"<{tag}{attribute}>{html.escape(text)}</{tag}>"


def _table(header: list[tuple[str, list[str]]], body: list[list[tuple[str, list[str]]]], caption: str = "") -> str:
    lines = ['<div class="scroll"><table>']
    if caption:
        lines.append(f"<caption>{html.escape(caption)}</caption>")
    lines.append("<thead><tr>" + "".join(_cell(t, c, "th") for t, c in header) + "</tr></thead>")
    lines.append("<tbody>")
    lines += ["<tr>" + "".join(_cell(t, c) for t, c in row) + "</tr>" for row in body]
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _document(parts: list[str]) -> str:
    # A fragment that is also a page: the report's viewer shows it as one, and its front page
    # pastes it into its own document (where the doctype and meta are ignored).
    return "\n".join(['<!doctype html>', '<meta charset="utf-8">', '<div class="exactsnn-table">', _STYLE,
                      *parts, "</div>", ""])


def _records(table) -> list[dict]:
    return table.to_dict("records")


def results_markdown(table) -> str:
    """The results table (a DataFrame with :data:`RESULT_COLUMNS`) as a Markdown table."""
    columns = list(RESULT_COLUMNS)
    lines = [
        "| " + " | ".join(RESULT_COLUMNS[c][0] for c in columns) + " |",
        "|" + "|".join("---" if c in ("dataset", "model") else "---:" for c in columns) + "|",
    ]
    for row in _records(table):
        lines.append("| " + " | ".join(_format(row[c], RESULT_COLUMNS[c][1]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _row_cells(row: dict, columns, published: dict | None = None) -> list[tuple[str, list[str]]]:
    cells = []
    for column in columns:
        fmt = RESULT_COLUMNS[column][1]
        classes = ["text"] if fmt == "{}" else []
        if _short_of_exact(column, row):
            classes.append("off")
        cells.append((_format(row.get(column), fmt), classes))
        if published is not None and column in PUBLISHED_COLUMNS:
            value = published.get(column)
            cells.append(("–" if _missing(value) else _format(value, fmt), ["published"]))  # "–": not known
    return cells


def results_html(table, published: dict | None = None) -> str:
    """The results table as an HTML fragment: the paper's columns first (ours, and the paper's
    published values beside them where ``published`` has the row), then every column behind
    a "details" switch.

    ``table``: a DataFrame with :data:`RESULT_COLUMNS`; ``published``: {(dataset, model):
    {column: value}} for the columns in :data:`PUBLISHED_COLUMNS`, fractions as in ``table``.
    """
    published = {tuple(k): v for k, v in (published or {}).items() if v}
    records = _records(table)
    show_published = any((r["dataset"], r["model"]) in published for r in records)
    header = []
    for column in MAIN_COLUMNS:
        text = RESULT_COLUMNS[column][0]
        header.append((text, ["text"] if column in ("dataset", "model") else []))
        if show_published and column in PUBLISHED_COLUMNS:
            header.append((text.replace(" (%)", ", paper (%)"), ["published"]))
    body = [
        _row_cells(r, MAIN_COLUMNS, published.get((r["dataset"], r["model"]), {}) if show_published else None)
        for r in records
    ]
    exact = sum(not any(_short_of_exact(c, r) for c in RESULT_COLUMNS) for r in records)
    summary = (f"{exact} of {len(records)} rows exact: agreement 100 % and no deviating spike, for the "
               "α-model and for B1." if records else "No rows.")
    note = ("Highlighted: agreement below 100 %, deviating spikes above 0, SNN accuracy different from the "
            "original network's.")
    note += (" Grey italic: the paper's published values (Stanojevic et al. 2023), where the config gives them."
             if show_published else
             " No published values are configured for these rows (a benchmark's <code>published:</code> key).")
    detail_header = [(RESULT_COLUMNS[c][0], ["text"] if c in ("dataset", "model") else []) for c in RESULT_COLUMNS]
    details = [_row_cells(r, RESULT_COLUMNS) for r in records]
    return _document([
        f"<p><strong>{html.escape(summary)}</strong></p>",
        _table(header, body),
        f"<p>{note}</p>",
        "<details><summary>All columns: latency, neurons, spikes, synaptic events, runtime, "
        "the B1 model</summary>",
        _table(detail_header, details),
        "</details>",
    ])


def robustness_summary(rows):
    """One row per (dataset, model, knob, value) of results/robustness.csv: the number of
    trials, mean, minimum and maximum of SNN accuracy, agreement and deviating spikes over the
    trials, the original network's accuracy and the latency."""
    keys = ["dataset", "model", "knob", "value"]
    grouped = rows.groupby(keys, sort=False)
    stats = grouped[["accuracy_snn", "agreement", "deviating_spikes"]].agg(["mean", "min", "max"])
    stats.columns = [f"{c}_{s}" for c, s in stats.columns]
    first = grouped[["test_samples", "accuracy_original", "latency"]].first()
    out = stats.join(first).join(grouped.size().rename("trials")).reset_index()
    return out


def _percent_range(row: dict, column: str) -> str:
    mean, low, high = (row[f"{column}_{s}"] for s in ("mean", "min", "max"))
    text = f"{mean:.2%}".replace("%", "")
    if low != high:
        text += f" ({low:.2%}–{high:.2%})".replace("%", "")
    return text


def robustness_html(rows) -> str:
    """The robustness sweeps (results/robustness.csv, one row per trial) as an HTML fragment:
    one line per parameter value with the mean over the trials and, where they differ, their
    range; one table per benchmark."""
    summary = robustness_summary(rows)
    parts = []
    for (dataset, model), block in summary.groupby(["dataset", "model"], sort=False):
        header = [("Parameter", ["text"]), ("Value", []), ("Trials", []), ("SNN acc. (%): mean (min–max)", []),
                  ("Agreement (%): mean (min–max)", []), ("Deviating spikes: mean", []), ("Latency (τ_c)", [])]
        body = []
        for r in _records(block):
            agreement_cls = ["off"] if r["agreement_min"] < 1.0 else []
            deviating_cls = ["off"] if r["deviating_spikes_max"] > 0 else []
            body.append([
                (KNOB_LABELS.get(r["knob"], r["knob"]), ["text"]),
                (f"{r['value']:g}", []),
                (f"{int(r['trials'])}", []),
                (_percent_range(r, "accuracy_snn"), []),
                (_percent_range(r, "agreement"), agreement_cls),
                (f"{r['deviating_spikes_mean']:,.0f}", deviating_cls),
                (f"{r['latency']:.4g}", []),
            ])
        original = block["accuracy_original"].iloc[0]
        samples = int(block["test_samples"].iloc[0])
        caption = f"{dataset} {model}: {samples} test samples, original accuracy {_format(original, '{:.2%}')} %"
        parts.append(_table(header, body, caption=caption))
    parts.append("<p>Highlighted: agreement below 100 % in at least one trial, deviating spikes in at least one "
                 "trial. Each trial has its own seed; ζ is deterministic (one trial).</p>")
    return _document(parts)


def embedded_image(png: str | Path, alt: str = "") -> str:
    """An ``<img>`` element that carries the PNG file itself (a base64 data URI).

    The report's front page pastes it in with ``raw:: html :file:``: an image that refers to its
    file by path would not show in the self-contained report, and the data URI is far longer
    than docutils accepts on a line of the page's own source.
    """
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return (f'<img alt="{html.escape(alt or Path(png).name)}" style="max-width: 100%; width: 720px" '
            f'src="data:image/png;base64,{data}">\n')
