# Helpers for every stage: config validation, lookups, input functions, wildcard constraints.

import json
import os
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = "../schemas/config.schema.yaml"
MERGE_HINT = (
    " (a file given with --configfile is merged into config/config.yaml key by key,"
    " so set this section in your file too)"
)


def _config_key(path):
    """benchmarks[0].epochs from the path ('benchmarks', 0, 'epochs')."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "<top level>"


def validate_config(config):
    """Validate against the schema (filling in its defaults), then check cross references.

    Raises a WorkflowError naming the offending key before any job is scheduled.
    """
    try:
        validate(config, SCHEMA)
    except WorkflowError:
        with open(workflow.source_path(SCHEMA)) as f:
            schema = yaml.safe_load(f)
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema).iter_errors(config)
        )
        if error is None:
            raise
        raise WorkflowError(
            f"Invalid configuration: config key '{_config_key(error.absolute_path)}': "
            f"{error.message}"
        ) from None

    seen = set()
    for i, row in enumerate(config["benchmarks"]):
        pair = (row["dataset"], row["model"])
        if pair in seen:
            raise WorkflowError(
                f"Invalid configuration: config key 'benchmarks[{i}]': "
                f"dataset '{pair[0]}' with model '{pair[1]}' is listed twice"
            )
        seen.add(pair)
    for i, row in enumerate(config["benchmarks"]):
        if row["dataset"] in IMAGESETS and row["dataset"] not in config["datasets"]:
            raise WorkflowError(
                f"Invalid configuration: config key 'datasets.{row['dataset']}' is missing: "
                f"benchmarks[{i}] uses {row['dataset']}, which needs its image folders"
            )
        if row["dataset"] in IMAGESETS and row["test_samples"] is not None:
            raise WorkflowError(IMAGESET_TEST_SAMPLES.format(key=f"benchmarks[{i}].test_samples", name=row["dataset"]))
        if row["dataset"] == "places365" and not (row["weights"] and row["prototxt"]):
            raise WorkflowError(
                f"Invalid configuration: config key 'benchmarks[{i}]': places365 needs "
                "'prototxt' (deploy_vgg16_places365.prototxt) and 'weights' (vgg16_places365.caffemodel)"
            )
    for i, ref in enumerate(config["robustness"]["benchmarks"]):
        if ref["dataset"] in IMAGESETS and config["robustness"]["test_samples"] is not None:
            raise WorkflowError(IMAGESET_TEST_SAMPLES.format(key="robustness.test_samples", name=ref["dataset"]))
    for section in ("robustness", "figures"):
        for i, ref in enumerate(config[section]["benchmarks"]):
            if (ref["dataset"], ref["model"]) not in seen:
                raise WorkflowError(
                    f"Invalid configuration: config key '{section}.benchmarks[{i}]': "
                    f"({ref['dataset']}, {ref['model']}) is not one of the benchmarks"
                    + MERGE_HINT
                )


# Datasets whose images are read from folders by exactsnn.imagesets (places365.smk, pass.smk)
# rather than loaded by exactsnn.datasets (data.smk), and whose networks are imported, not trained.
IMAGESETS = ("places365", "pass")
# Their data stage fixes the test parts (Phase 2 jobs) before any benchmark reads them, so a
# per-benchmark cut would leave the parts and the sample count disagreeing.
IMAGESET_TEST_SAMPLES = (
    "Invalid configuration: config key '{key}': {name} does not take test_samples (its test parts "
    "are made by its data stage); for pass set datasets.pass.part_size and the row's parts, "
    "places365 uses all 36,500 validation images as the paper does"
)

validate_config(config)
# A trained dataset that `datasets` does not list is read as the schema's defaults say: give it
# an empty entry and let the schema fill it in.
for _row in config["benchmarks"]:
    if _row["dataset"] not in IMAGESETS:
        config["datasets"].setdefault(_row["dataset"], {})
validate(config, SCHEMA)

# Benchmarks indexed as BENCHMARKS[dataset][model], so that values are looked up by
# path: lookup(dpath="{dataset}/{model}/epochs", within=BENCHMARKS).
BENCHMARKS = {}
for _row in config["benchmarks"]:
    BENCHMARKS.setdefault(_row["dataset"], {})[_row["model"]] = _row

DATASETS = sorted(BENCHMARKS)
MODELS = sorted({row["model"] for row in config["benchmarks"]})
KNOBS = ("zeta", "noise_sigma", "alpha_sigma")


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    part=r"\d+",
    knob="|".join(KNOBS),
    value=r"[-+0-9.eE]+",


def one_of(names):
    """A wildcard constraint matching exactly `names` (and nothing when there are none)."""
    return "|".join(names) if names else "(?!)"


TRAINED = [d for d in DATASETS if d not in IMAGESETS]


def output_of(pattern, wildcards):
    """A rule's output `pattern` (rules.X.output.key) with the job's wildcards filled in."""
    return expand(pattern, **wildcards)[0]


def dataset_file(wildcards):
    """What the data stage wrote for a dataset: one .npz, or a .json describing image shards."""
    data = {"places365": rules.places365_data, "pass": rules.pass_data}.get(wildcards.dataset, rules.data)
    return output_of(data.output.dataset, wildcards)


def imageset_value(key):
    """Params function: a key of config['datasets'][dataset] for an image set."""
    return lookup(dpath=f"datasets/{{dataset}}/{key}", within=config)


def benchmark_value(key):
    """Input/params function: the benchmark's value of `key`."""
    return lookup(dpath=f"{{dataset}}/{{model}}/{key}", within=BENCHMARKS)


def dataset_spec(wildcards):
    """Where the data for one dataset comes from (see config/README.md, `datasets`)."""
    return {**config["datasets"][wildcards.dataset], "cache_dir": config["data"]["cache_dir"]}


def weights_input(wildcards):
    """The configured weights file, if any, so that a missing file fails before training."""
    weights = BENCHMARKS[wildcards.dataset][wildcards.model]["weights"]
    return [weights] if weights else []


def is_onnx(dataset, model):
    """A benchmark whose `weights` is an ONNX model: imported from the file, not trained."""
    weights = BENCHMARKS[dataset][model]["weights"]
    return dataset in TRAINED and bool(weights) and str(weights).lower().endswith(".onnx")


def trained_model(wildcards):
    """The network Phase 1 reads: the Caffe or Keras import of an image set's network, the
    ONNX copy (onnx_model) or the trained Keras model (train)."""
    if wildcards.dataset in IMAGESETS:
        made = {"places365": rules.places365_model, "pass": rules.pass_model}[wildcards.dataset]
    else:
        made = rules.onnx_model if is_onnx(wildcards.dataset, wildcards.model) else rules.train
    return output_of(made.output.model, wildcards)


def part_files(rule, key):
    """Input function: the part files `rule` (phase1_part, phase2_part) writes for one
    benchmark, as many as the benchmark's `key` says, in order."""

    def files(wildcards):
        return expand(
            getattr(rules, rule).output.part,
            dataset=wildcards.dataset,
            model=wildcards.model,
            part=range(BENCHMARKS[wildcards.dataset][wildcards.model][key]),
        )

    return files


phase1_parts = part_files("phase1_part", "phase1_parts")
phase2_parts = part_files("phase2_part", "parts")


def limit_local_memory(share=0.9):
    """On one machine, let the jobs running at once ask for at most ``share`` of its memory
    together (their mem_mb: the Phase 1 and Phase 2 parts' estimates), unless --resources sets mem_mb; a
    cluster's scheduler places jobs by their memory itself."""
    if not workflow.local_exec or workflow.remote_exec:
        return
    if any(key in workflow.global_resources for key in ("mem", "mem_mb", "mem_mib")):
        return
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 10**6
    except (ValueError, OSError, AttributeError):  # not a POSIX system that reports it
        return
    workflow.global_resources["mem_mb"] = int(share * total_mb)


limit_local_memory()


def estimated_mem_mb(wildcards, input):
    """Memory (MB) a part needs, from the estimate its stage's network job wrote (memory.json:
    phase1_network's mem_mb, or phase2_network's per neuron model, at the batch size the budget
    allows); while that file does not exist yet (a dry run), the Phase 2 part budget
    (phase2.memory_mb) stands in."""
    path = Path(input.memory)
    if not path.exists():
        return config["phase2"]["memory_mb"]
    memory = json.loads(path.read_text())
    estimates = [memory] if "mem_mb" in memory else memory.values()
    return max(int(estimate["mem_mb"]) for estimate in estimates)


def robustness_values(knob):
    """The sweep values of one knob, formatted as they appear in file names."""
    return [format_value(v) for v in config["robustness"][knob]]


def format_value(value):
    return repr(float(value))


def per_benchmark(pattern, refs, **more):
    """`pattern` (a rule's output) for each (dataset, model) of `refs`, times the values of
    `more` (further wildcards), in the order of `refs`."""
    return [path for ref in refs for path in expand(pattern, dataset=ref["dataset"], model=ref["model"], **more)]


def all_metrics():
    return per_benchmark(rules.measure.output.metrics, config["benchmarks"])


def published_values():
    """The paper's published values per benchmark ("dataset/model": {column: value}), for the
    rows whose config gives them; shown beside ours in the report's table."""
    return {
        f"{row['dataset']}/{row['model']}": row["published"]
        for row in config["benchmarks"]
        if row.get("published")
    }


def robustness_points(wildcards=None):
    return [
        path
        for ref in config["robustness"]["benchmarks"]
        for knob in KNOBS
        for path in per_benchmark(rules.robustness_point.output.table, [ref], knob=knob, value=robustness_values(knob))
    ]


def robustness_plots():
    swept = [knob for knob in KNOBS if config["robustness"][knob]]
    return per_benchmark(rules.robustness_plot.output.plot, config["robustness"]["benchmarks"], knob=swept)


FIGURES = ("raster", "histogram", "potentials", "output")

# Every benchmark is converted to each neuron model (exactsnn.neurons), the paper's α-model
# first: its network is the one the figures, the robustness study and the table's main
# columns use.
NEURONS = ("alpha", "b1")


def figure_files():
    return [
        path
        for ref in config["figures"]["benchmarks"]
        for name in FIGURES
        for path in per_benchmark(getattr(rules.figures.output, name), [ref])
    ]


def crosscheck_files(wildcards=None):
    refs = config["crosscheck"]["benchmarks"] or config["benchmarks"]
    return per_benchmark(rules.crosscheck.output.table, refs)


def final_outputs():
    outputs = [str(path) for path in rules.table.output]
    if config["crosscheck"]["enabled"]:
        outputs += [str(path) for path in rules.crosscheck_table.output]
    if robustness_points():
        outputs += [str(path) for path in rules.robustness_table.output]
        outputs += robustness_plots()
    outputs += figure_files()
    return outputs + [embedded_figure_file(path) for path in outputs if path.endswith(".png")]


def embedded_figure_file(png):
    """The front page's copy of a figure (rule embedded_figure); report/workflow.rst spells it too."""
    figure = png.removeprefix("results/").removesuffix(".png")
    return expand(rules.embedded_figure.output[0], figure=figure)[0]
