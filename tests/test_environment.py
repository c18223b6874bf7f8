"""The pinned environment (envs/constraints.txt) and the README's numbers that come from it.

The README's default table was measured with exactly the versions of envs/constraints.txt;
training results depend on them (the float64 mapping and agreement do not).  These tests check
that the installed packages are the pinned ones, that every other way of installing (conda
environments, Dockerfile, CI, the README's commands) goes through the same file, and give
:func:`check_readme_tables`, which the end-to-end workflow test applies to its results.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"


def read_pins(path: Path) -> dict[str, str]:
    """{normalised name: version} of a constraints file's ``name==version`` lines."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"{path.name}:{number}: not a name==version pin: {line!r}"
        pins[normalise(match[1])] = match[2]
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_differences(pins: dict[str, str]) -> list[str]:
    """Installed distributions whose version differs from the pin (local labels such as +cpu ignored)."""
    wrong = []
    for name, version in pins.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an extra that is not installed: nothing to check
        if have.split("+", 1)[0] != version:
            wrong.append(f"{name} {have} (pinned {version})")
    return wrong


def environment_is_pinned() -> bool:
    return not installed_differences(read_pins(ENVS / "constraints.txt"))


def test_installed_packages_have_the_pinned_versions():
    wrong = installed_differences(read_pins(ENVS / "constraints.txt"))
    assert not wrong, (
        "installed versions differ from envs/constraints.txt (install with "
        f'`pip install -c envs/constraints.txt -e ".[workflow,test]"`): {", ".join(wrong)}'
    )


def test_constraints_cover_every_dependency_of_the_project():
    pins = read_pins(ENVS / "constraints.txt")
    requirements = metadata.requires("exactsnn") or []
    names = {normalise(re.match(r"[A-Za-z0-9_.\-]+", r)[0]) for r in requirements}
    # The crosscheck extra is pinned by crosscheck-constraints.txt instead (NumPy < 2.4).
    names -= {"brian2"}
    assert names <= set(pins), f"not pinned in envs/constraints.txt: {sorted(names - set(pins))}"
    assert sys.version_info[:2] == (3, 11) or pytest.skip("the pins were resolved for CPython 3.11")


def test_crosscheck_constraints_change_only_numpy_and_add_brian2():
    main = read_pins(ENVS / "constraints.txt")
    side = read_pins(ENVS / "crosscheck-constraints.txt")
    assert {k: v for k, v in side.items() if k not in ("numpy", "brian2", "cython")} == {
        k: v for k, v in main.items() if k != "numpy"
    }
    assert side["numpy"].startswith("2.3.") and side["brian2"] == "2.9.0"


@pytest.mark.parametrize(
    "env, constraints", [("exactsnn.yaml", "constraints.txt"), ("crosscheck.yaml", "crosscheck-constraints.txt")]
)
def test_conda_environments_install_from_the_constraints(env, constraints):
    spec = yaml.safe_load((ENVS / env).read_text())
    conda = [d for d in spec["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    assert "python =3.11" in conda
    # conda packages would escape the pins: everything but Python and pip comes through pip.
    assert set(conda) == {"python =3.11", "pip"}
    assert f"-c {constraints}" in pip and (ENVS / constraints).exists()


def test_dockerfile_ci_and_readme_install_from_the_constraints():
    docker = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11" in docker and "-c envs/constraints.txt" in docker
    for line in re.findall(r"^.*pip install.*$", (ROOT / ".ci" / "run").read_text(), re.M):
        if not line.lstrip().startswith("#"):
            assert "-c envs/" in line, f".ci/run installs without the pins: {line}"
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, re.S)
    assert len(commands) == 2 and all("pip install -c envs/constraints.txt" in c for c in commands)


# ---------------------------------------------------------------- the README's default tables


def _readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Workflow", 1)[1].split("\n## ", 1)[0]


def _rows(markdown: str, header: str) -> list[list[str]]:
    """Cells of the markdown table whose header line starts with ``header``."""
    block = markdown.split(header, 1)[1].split("\n\n", 1)[0]
    lines = block.splitlines()[2:]  # the rest of the header line, the |---| line
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").replace("−", "-").split("(")[0])


def _significant(x: float, digits: int) -> float:
    return float(f"{x:.{digits - 1}e}")


def check_readme_tables(results: Path) -> None:
    """The README's default results and robustness tables equal ``results``' to the printed digit."""
    import pandas as pd

    section = _readme_section()
    table = pd.read_csv(results / "table.csv").set_index("model")
    rows = _rows(section, "| Model | Acc. original = scaled = SNN |")
    assert [r[0] for r in rows] == list(table.index)
    for model, accuracy, agreement, spikes, events, deviating in rows:
        row = table.loc[model]
        assert _number(accuracy) == round(100 * row.accuracy_snn, 2), (model, accuracy, row.accuracy_snn)
        assert agreement == f"{100 * row.agreement:g} % / {100 * row.agreement_b1:g} %", (model, agreement)
        alpha, b1 = (_number(s) for s in spikes.split("/"))
        assert (alpha, b1) == (row.spikes_per_neuron, round(row.spikes_per_neuron_b1, 3)), (model, spikes)
        alpha, b1 = (_number(s) for s in events.split("/"))
        assert (alpha, b1) == (_significant(row.synaptic_events, 4), _significant(row.synaptic_events_b1, 4)), (
            model,
            events,
        )
        assert _number(deviating) == row.deviating_spikes + row.deviating_spikes_b1

    knobs = {"ζ": "zeta", "spike-time noise σ": "noise_sigma", "α mismatch σ_α": "alpha_sigma"}
    sweep = pd.read_csv(results / "robustness.csv")
    rows = _rows(section, "| knob | value | SNN accuracy (mean, min–max) |")
    assert rows
    for knob, value, accuracy, agreement, deviating, latency in rows:
        point = sweep[(sweep.knob == knobs[knob]) & (sweep.value == _number(value))]
        assert len(point), (knob, value)
        assert _number(accuracy) == round(100 * point.accuracy_snn.mean(), 2), (knob, value, accuracy)
        assert _number(agreement) == round(100 * point.agreement.mean(), 2), (knob, value, agreement)
        assert _number(deviating) == _significant(point.deviating_spikes.mean(), 4), (knob, value, deviating)
        assert _number(latency) == round(point.latency.mean(), 2), (knob, value, latency)


def test_readme_tables_are_read_in_full():
    """The parser sees every row the README prints (a table it skipped would never be checked)."""
    section = _readme_section()
    assert len(_rows(section, "| Model | Acc. original = scaled = SNN |")) == 4
    assert len(_rows(section, "| knob | value | SNN accuracy (mean, min–max) |")) == 10
