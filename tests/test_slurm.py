"""The workflow through the SLURM executor, on a one-node SLURM started on localhost.

Needs Debian's ``slurm-wlm`` and ``munge`` packages (skipped where ``slurmctld`` is missing) and
root (the daemons run as root).  The test starts ``munged`` on a private socket with a fresh
key, then ``slurmctld`` and ``slurmd -N localhost`` with a minimal configuration (munge auth,
no accounting, no cgroups, ``proctrack/linuxproc``, ``task/none``), runs the workflow with
``--profile profiles/slurm`` (resources scaled down to this node) and stops every daemon it
started.

The configuration has to be at SLURM's default path, /etc/slurm/slurm.conf: the jobstep
executor plugin removes every ``SLURM_*`` variable, ``SLURM_CONF`` included, before it calls
``srun`` inside a job.  The test therefore refuses to run (skips) where that file already
exists, and removes the one it wrote.  Without accounting ``sacct`` knows no jobs, so the
executor polls with ``squeue`` (``slurm-status-command: squeue`` in the profile; completed jobs
stay visible for ``MinJobAge`` seconds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_workflow import CONFIG, ROOT, SNAKEFILE, _env, check_exact, read_table

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "srun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _quiet(*cmd: str, timeout: float = 30):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _stop(pid_file: Path) -> None:
    """SIGTERM the daemon whose pid is in ``pid_file`` (one we started), then SIGKILL if needed."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(20):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.25)


def _slurm_conf(d: Path) -> str:
    cpus = os.cpu_count() or 1
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return f"""\
ClusterName=exactsnn-test
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=900
ReturnToService=2
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
NodeName=localhost CPUs={cpus} RealMemory={int(memory_mb * 0.8)} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm_cluster(tmp_path):
    if shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed (apt-get install slurm-wlm munge)")
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM/munge programs missing: {', '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd needs root")
    if SYSTEM_CONF.exists():
        pytest.skip(f"{SYSTEM_CONF} exists: this machine has a SLURM configuration, which the test will not replace")

    d = tmp_path / "slurm"
    for sub in ("state", "spool"):
        (d / sub).mkdir(parents=True)
    d.chmod(0o700)
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)

    wrote_conf = False
    try:
        subprocess.run(
            ["munged", "--force", f"--socket={d}/munge.socket", f"--key-file={key}",
             f"--log-file={d}/munged.log", f"--pid-file={d}/munged.pid", f"--seed-file={d}/munged.seed"],
            check=True, capture_output=True, text=True, timeout=30,
        )
        _wait("munged", lambda: (d / "munge.socket").exists())

        (d / "slurm.conf").write_text(_slurm_conf(d))
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(d / "slurm.conf", SYSTEM_CONF)
        wrote_conf = True

        subprocess.run(["slurmctld", "-c"], check=True, capture_output=True, text=True, timeout=60)
        _wait("slurmctld", lambda: _quiet("scontrol", "ping").returncode == 0)
        subprocess.run(["slurmd", "-N", "localhost"], check=True, capture_output=True, text=True, timeout=60)
        _wait("an idle node", lambda: _quiet("sinfo", "-h", "-o", "%t").stdout.strip() == "idle")
        yield d
    finally:
        with contextlib.suppress(Exception):
            _quiet("scontrol", "shutdown", timeout=20)
        for daemon in ("slurmd", "slurmctld", "munged"):
            _stop(d / f"{daemon}.pid")
        if wrote_conf:
            SYSTEM_CONF.unlink(missing_ok=True)


def test_every_kind_of_job_through_slurm_executor(slurm_cluster, tmp_path):
    # .test/config_slurm: each rule the default config runs, on one small network (the default
    # config itself, four networks trained 30 epochs, took 5–7 minutes of CI's 2 cores here).
    run = tmp_path / "run"
    # The cluster profile as it is, with its resources scaled down to this one small node
    # (no GPU, few cores): command-line values replace the profile's.
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(run),
        "--profile", str(ROOT / "profiles" / "slurm"),
        "--configfile", str(ROOT / ".test" / "config_slurm" / "config.yaml"),
        "--jobs", "4",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "2",
        "--seconds-between-status-checks", "2",  # the jobs take seconds here, not hours
        "--default-resources", "mem_mb=500", "runtime=30", "cpus_per_task=1",
        "--set-threads", "train=1", "phase1_part=1", "phase2_part=1", "robustness_point=1",
        "--set-resources", "data:runtime=30",
        "--retries", "0",
        "--latency-wait", "5",
    ]
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, env=_env())
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:] + "\n" + _daemon_logs(slurm_cluster)
    print(f"workflow through SLURM: {time.monotonic() - started:.0f} s")

    check_exact(read_table(run))
    # The outputs of every rule of the default workflow (the jobs went through SLURM: below).
    results = run / "results"
    assert len(list(results.glob("phase1/digits/fc/parts/*.npz"))) == 2
    assert (results / "robustness.csv").stat().st_size and (results / "robustness.html").stat().st_size
    for png in ("robustness/digits/fc/zeta.png", "robustness/digits/fc/alpha_sigma.png", "figures/digits/fc/raster.png"):
        assert (results / png).stat().st_size and (results / "report" / "embedded" / png).with_suffix(".html").exists()
    assert "has been submitted with SLURM jobid" in out
    # Every job of the run went through SLURM and completed there.
    jobs = _quiet("squeue", "-h", "--states=all", "-o", "%T").stdout.split()
    assert jobs and set(jobs) == {"COMPLETED"}, jobs
    submitted = out.count("has been submitted with SLURM jobid")
    assert submitted == len(jobs)


def _daemon_logs(d: Path) -> str:
    text = []
    for name in ("slurmctld.log", "slurmd.log"):
        path = d / name
        if path.exists():
            text.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-30:]))
    return "\n".join(text)
