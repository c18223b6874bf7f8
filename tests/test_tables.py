"""The report's tables (exactsnn.tables) and the report's text (workflow/report/*.rst).

The rst files are rendered the way Snakemake's report renders them (Jinja2 with trim_blocks and
lstrip_blocks, then docutils' HTML writer), so a broken caption or a table missing from the front
page shows up here and not only in a full workflow run.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from exactsnn.tables import RESULT_COLUMNS, results_html, results_markdown, robustness_html, robustness_summary

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"


def _row(dataset="digits", model="fc", **changes) -> dict:
    row = {
        "dataset": dataset, "model": model, "test_samples": 450,
        "accuracy_original": 0.95, "accuracy_scaled": 0.95, "accuracy_snn": 0.95, "agreement": 1.0,
        "latency": 19.48, "hidden_neurons": 100, "spikes_per_neuron": 1.0, "synaptic_events": 1.0e4,
        "relu_macs": 9.0e3, "deviating_spikes": 0, "runtime_s": 0.5,
        "accuracy_snn_b1": 0.95, "agreement_b1": 1.0, "spikes_per_neuron_b1": 0.4,
        "synaptic_events_b1": 4.0e3, "deviating_spikes_b1": 0,
    }
    row.update(changes)
    return row


def _table(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))[list(RESULT_COLUMNS)]


def _main_rows(text: str) -> list[str]:
    """The body rows of the first (main) table."""
    first = text.split("<details>")[0]
    return re.findall(r"<tr>(.*?)</tr>", first.split("<tbody>")[1])


def test_exact_rows_have_no_highlight():
    text = results_html(_table(_row(), _row(model="lenet")))
    assert 'class="off"' not in text and "2 of 2 rows exact" in text
    assert "<th>Agreement (%)</th>" in text and "100.00" in text


def test_short_of_exact_cells_are_highlighted():
    text = results_html(_table(_row(), _row(model="vgg", agreement=0.9978, accuracy_snn=0.9511, deviating_spikes=12)))
    exact, off = _main_rows(text)
    assert "off" not in exact
    assert '<td class="off">99.78</td>' in off and '<td class="off">12</td>' in off
    assert '<td class="off">95.11</td>' in off  # differs from the original 95.00
    assert "1 of 2 rows exact" in text


def test_b1_shortfall_is_highlighted_in_the_details():
    text = results_html(_table(_row(agreement_b1=0.99, deviating_spikes_b1=3)))
    details = text.split("<details>")[1]
    assert '<td class="off">99.00</td>' in details and '<td class="off">3</td>' in details
    assert "0 of 1 rows exact" in text


def test_published_values_stand_beside_ours_where_given():
    published = {("digits", "fc"): {"accuracy_snn": 0.9, "agreement": 1.0}}
    text = results_html(_table(_row(), _row(model="lenet")), published)
    header = text.split("<thead>")[1].split("</thead>")[0]
    assert header.index("SNN acc. (%)") < header.index("SNN acc., paper (%)") < header.index("Agreement (%)")
    fc, lenet = _main_rows(text)
    assert '<td class="published">90.00</td>' in fc and '<td class="published">–</td>' in fc  # no ReLU value
    assert lenet.count('<td class="published">–</td>') == 3


def test_no_published_columns_when_none_is_known():
    text = results_html(_table(_row()), {})
    assert "paper (%)" not in text and "No published values" in text


def test_missing_accuracy_and_names_are_escaped():
    text = results_html(_table(_row(dataset="pass", model="<vgg16>", accuracy_original=np.nan, accuracy_scaled=np.nan,
                                    accuracy_snn=np.nan, accuracy_snn_b1=np.nan)))
    assert "&lt;vgg16&gt;" in text and "<vgg16>" not in text
    assert "n/a" in _main_rows(text)[0] and 'class="off"' not in text


def test_markdown_keeps_its_shape():
    markdown = results_markdown(_table(_row(), _row(model="lenet", accuracy_original=np.nan)))
    lines = markdown.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| Dataset | Model |") and "n/a" in lines[3]
    assert all(line.count("|") == len(RESULT_COLUMNS) + 1 for line in lines)


def _sweep() -> pd.DataFrame:
    rows = []
    for knob, value, trial, acc, agr, dev in [
        ("zeta", 0.5, 0, 0.95, 1.0, 0), ("zeta", -0.5, 0, 0.95, 0.9844, 5490),
        ("noise_sigma", 0.01, 0, 0.9444, 0.9889, 0), ("noise_sigma", 0.01, 1, 0.9489, 0.9911, 0),
    ]:
        rows.append({"dataset": "digits", "model": "lenet", "knob": knob, "value": value, "trial": trial,
                     "test_samples": 450, "accuracy_original": 0.95, "accuracy_snn": acc, "agreement": agr,
                     "latency": 19.48, "deviating_spikes": dev})
    return pd.DataFrame(rows)


def test_robustness_summary_is_over_the_trials():
    summary = robustness_summary(_sweep()).set_index(["knob", "value"])
    noisy = summary.loc[("noise_sigma", 0.01)]
    assert noisy.trials == 2 and np.isclose(noisy.agreement_mean, 0.99) and noisy.agreement_min == 0.9889


def test_robustness_html_shows_mean_range_and_highlights():
    text = robustness_html(_sweep())
    assert "99.00 (98.89–99.11)" in text
    rows = re.findall(r"<tr>(.*?)</tr>", text.split("<tbody>")[1])
    exact = next(r for r in rows if "<td>0.5</td>" in r)
    narrow = next(r for r in rows if "<td>-0.5</td>" in r)
    assert "off" not in exact and '<td class="off">98.44</td>' in narrow and '<td class="off">5,490</td>' in narrow
    assert "spike-time noise σ (τ_c)" in text and "digits lenet: 450 test samples" in text


# ----------------------------------------------------------------------------- the report's rst


def _render(path: Path, **context) -> str:
    """Jinja2 then docutils, as snakemake.report does; a docutils warning fails the test."""
    jinja2 = pytest.importorskip("jinja2")
    from docutils.core import publish_parts

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    text = env.from_string(path.read_text()).render(**context)
    return publish_parts(text, writer_name="html", settings_overrides={"halt_level": 2, "report_level": 5})["html_body"]


def _snakemake(**wildcards):
    return SimpleNamespace(config={"phase2": {"zeta": 0.5}}, wildcards=SimpleNamespace(**wildcards))


def test_front_page_embeds_both_tables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the report runs in the working directory; paths are relative
    (tmp_path / "results").mkdir()
    Path("results/table.html").write_text(results_html(_table(_row(), _row(model="vgg", agreement=0.99))))
    Path("results/robustness.html").write_text(robustness_html(_sweep()))
    from exactsnn.tables import embedded_image

    figures = {"results/figures/digits/vgg/raster.png": "Figures", "results/robustness/digits/lenet/zeta.png": "Robustness"}
    for png in figures:
        Path(png).parent.mkdir(parents=True)
        Path(png).write_bytes(b"\x89PNG" + png.encode())
        embedded = Path("results/report/embedded") / Path(png).relative_to("results").with_suffix(".html")
        embedded.parent.mkdir(parents=True, exist_ok=True)
        embedded.write_text(embedded_image(png))  # what rule embedded_figure writes

    def record(path, category=None):
        kinds = {".png": "image/png", ".html": "text/html"}
        return SimpleNamespace(target=Path(path).name, path=Path(path), category=SimpleNamespace(name=category),
                               mime=kinds[Path(path).suffix], caption=f"<p>What to look for in {path}</p>",
                               raw_wildcards=SimpleNamespace(dataset="digits", model=path.split("/")[-2]))

    files = [record(p, c) for p, c in figures.items()]
    files += [record("results/table.html", "Results table"), record("results/robustness.html", "Robustness")]
    body = _render(REPORT / "workflow.rst", snakemake=_snakemake(), categories={}, files=files)
    assert body.count('<div class="exactsnn-table">') == 2
    assert '<td class="off">99.00</td>' in body and "98.89–99.11" in body
    assert "ζ = 0.5" in body
    # every figure, inside the page, with its caption: the robustness plot after its table
    assert body.count("data:image/png;base64,") == 2 and body.count('class="exactsnn-caption"') == 2
    assert body.index("Robustness</h") < body.index("zeta.png") < body.index("Figures</h") < body.index("raster.png")
    assert "What to look for in results/figures/digits/vgg/raster.png" in body


def test_front_page_without_tables_still_renders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = _render(REPORT / "workflow.rst", snakemake=_snakemake(), categories={}, files=[])
    assert '<div class="exactsnn-table">' not in body and "Stanojevic" in body


@pytest.mark.parametrize("caption", sorted(p.name for p in REPORT.glob("*.rst") if p.name != "workflow.rst"))
def test_every_caption_renders_and_says_what_to_look_for(caption):
    body = _render(REPORT / caption, snakemake=_snakemake(dataset="digits", model="lenet", knob="noise_sigma"))
    assert body.strip()
    figures_and_tables = {"histogram.rst", "potentials.rst", "output.rst", "raster.rst", "robustness_plot.rst",
                          "table.rst", "robustness.rst"}
    if caption in figures_and_tables:
        assert "What to look for" in body


def test_embedded_image_carries_the_png_itself(tmp_path):
    import base64
    import re

    from exactsnn.tables import embedded_image

    png = tmp_path / "a<b.png"
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
    png.write_bytes(data)
    element = embedded_image(png)
    assert base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', element)[1]) == data
    assert 'alt="a&lt;b.png"' in element and "\n" not in element.rstrip("\n")
