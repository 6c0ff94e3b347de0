"""The run session: a run directory and the steps (build, objective, teacher outputs, fit, record,
distil) that the experiment, every strategy and the other commands are made of."""

from distil.session.results import ModelResult
from distil.session.run_dir import CONFIG, METRICS, SUMMARY, RunDir, read_config, read_summary
from distil.session.run_session import RunSession

__all__ = ["CONFIG", "METRICS", "SUMMARY", "ModelResult", "RunDir", "RunSession", "read_config", "read_summary"]
