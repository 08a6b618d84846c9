"""Jobs under a scheduler (hydra-submitit-launcher: SLURM, or submitit_local), on both sides.

Job side: a job stopped by SIGTERM hands submitit a result (so the launcher collects it) unless SLURM
is ending the job to run it again; then it leaves none, and the requeued job writes it.
Launcher side: launchers that collect every job however it ended, and never wait forever for a job
that left no result, even on a cluster without accounting (sacct has no data there): they read the
job's state from squeue instead. A job without a result is collected as None and reported by
sweep.launch.failed_jobs.FailedJobs from its run dir."""

import logging
import math
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from sweep.errors import InputError

log = logging.getLogger(__name__)

# squeue states after which a job runs no more (a requeued job is PENDING again)
ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}
POLL_S = 2.0  # seconds between two looks at the jobs that have not ended
GRACE_S = 30.0  # seconds a job must stay out of the running states before it counts as ended without a result
# the environment may shorten them (the tests do: a killed job's 30 s grace is their longest wait)
POLL_ENV, GRACE_ENV = "ENCODER_SWEEP_SLURM_POLL_S", "ENCODER_SWEEP_SLURM_GRACE_S"


def seconds_from_env(name: str, default: float) -> float:
    """The number of seconds in the environment variable `name`, or the default where it is unset."""
    said = os.environ.get(name)
    if said is None:
        return default
    try:
        seconds = float(said)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # NaN too
        raise InputError(f"{name}={said}: must be a number of seconds >= 0 (unset: {default:g})")
    return seconds


# ---------------------------------------------------------------- job side


def under_submitit() -> bool:
    return "SUBMITIT_EXECUTOR" in os.environ


def slurm_requeues_this_job() -> bool:
    """Whether SLURM is ending this job to start it again: `scontrol requeue` (by a user, or by
    submitit at a time limit) counts the restart before it sends SIGTERM; a pre-emption of a
    requeueable job sets its PreemptTime."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return False
    try:
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False  # cannot tell: a result, so that the launcher never waits for a job that will not come back
    fields = dict(re.findall(r"(\w+)=(\S+)", shown))
    restarted = int(fields.get("Restarts", 0)) > int(os.environ.get("SLURM_RESTART_COUNT", 0))
    preempted = fields.get("PreemptTime", "None") != "None" and fields.get("Requeue") == "1"
    return restarted or preempted


# ---------------------------------------------------------------- launcher side


def slurm_state(job_id: str) -> Optional[str]:
    """The job's state as squeue shows it; "GONE" once SLURM has forgotten it (MinJobAge); None when
    SLURM cannot be asked right now."""
    try:
        result = subprocess.run(
            ["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return "GONE" if "Invalid job id" in result.stderr else None
    states = result.stdout.split()
    return states[0] if states else "GONE"


def ended(job) -> bool:
    """A result file, or the job runs no more: submitit asks the local process itself; for SLURM
    (where submitit would ask sacct), squeue."""
    from submitit.slurm.slurm import SlurmJob

    if job.paths.result_pickle.exists():
        return True
    if isinstance(job, SlurmJob):
        return slurm_state(job.job_id) in ENDED | {"GONE"}
    return job.done()


def state_of(job) -> str:
    from submitit.slurm.slurm import SlurmJob

    return slurm_state(job.job_id) if isinstance(job, SlurmJob) else "ended"


def collect(jobs: Sequence[Any], overrides: Sequence[Sequence[str]], poll_s: float, grace_s: float) -> List[JobReturn]:
    """Every job's JobReturn, in order. A job that wrote no result (killed, cancelled, out of memory)
    or whose result is an error in submitit itself is logged in one line and returned as a completed
    None (Hydra's sweeper raises on anything else), for FailedJobs to report from its run dir.
    poll_s: seconds between two looks; grace_s: how long a job may show no result once it runs no more."""
    import submitit

    returns: List[Optional[JobReturn]] = [None] * len(jobs)
    ended_since = {}
    while any(r is None for r in returns):
        for i, job in enumerate(jobs):
            if returns[i] is not None:
                continue
            if not ended(job):
                ended_since.pop(i, None)
                continue
            if job.paths.result_pickle.exists():
                try:
                    returns[i] = job.results()[0]
                    continue
                except submitit.core.utils.FailedJobError as error:  # submitit itself failed in the job
                    reason = str(error).splitlines()[0]
            elif time.time() - ended_since.setdefault(i, time.time()) < grace_s:
                continue  # the result file may be on its way, or the job about to be requeued
            else:  # job.results() would wait for it, asking sacct forever where it has no data
                reason = (
                    f"state {state_of(job)}; killed before it could write one (SIGKILL, out of memory, node failure)"
                )
            log.error(
                "job %s (%s) ended without a result: %s", job.job_id, " ".join(filter_overrides(overrides[i])), reason
            )
            returns[i] = JobReturn(overrides=list(overrides[i]), status=JobStatus.COMPLETED, _return_value=None)
        if any(r is None for r in returns):
            time.sleep(poll_s)
    return returns


class CollectingLauncher(submitit_launcher.BaseSubmititLauncher):
    """The base of the launchers in hydra_plugins/encoder_sweep (Hydra takes plugins only from there)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """The plugin's launch (hydra-submitit-launcher 1.2), with its last line,
        `[j.results()[0] for j in jobs]`, replaced by collect(): that line raises on the first job
        without a result and loses every other job's."""
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        poll_s, grace_s = seconds_from_env(POLL_ENV, POLL_S), seconds_from_env(GRACE_ENV, GRACE_S)  # before any job
        params = self.params
        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params["submitit_folder"],
            **{f"{self._EXECUTOR}_{k}": v for k, v in params.items() if k == "max_num_timeout"},
        )
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in baseparams else f"{self._EXECUTOR}_{k}": v for k, v in params.items() if k not in init_keys}
        )
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, self.config.hydra.sweep.dir)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        return collect(jobs, job_overrides, poll_s, grace_s)
