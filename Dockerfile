# exactsnn: the library and the workflow in one image.
#   docker build -t exactsnn .
#   docker run --rm -v "$PWD/results:/work/results" exactsnn              # default workflow
#   docker run --rm -v "$PWD/results:/work/results" -v /data:/work/data exactsnn \
#       snakemake --cores all --configfile config/paper.yaml
# Python 3.11.7, the interpreter envs/constraints.txt was resolved and CI runs on.
FROM python:3.11.7-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /work
COPY . /work
RUN pip install -c envs/constraints.txt ".[workflow]"

CMD ["snakemake", "--cores", "all"]
