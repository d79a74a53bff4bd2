"""Speed measurement under one declared protocol: ``ovbench profile``.

- :mod:`~ovbench.profiling.settings`: the declared inputs of a measurement and their numerics;
- :mod:`~ovbench.profiling.timing`: warm-up, timed windows (CUDA events or ``perf_counter``), statistics;
- :mod:`~ovbench.profiling.flops`: FLOPs with the operators that could not be counted;
- :mod:`~ovbench.profiling.environment`: the environment card (device class, versions, flags, threads);
- :mod:`~ovbench.profiling.targets`: MODEL (config, model file or ``module:factory``) to a model;
- :mod:`~ovbench.profiling.runner`: the measurements and the speed records;
- :mod:`~ovbench.profiling.report`: the printed card.
"""
from ovbench.profiling.report import format_report
from ovbench.profiling.runner import ProfileOptions, profile
from ovbench.profiling.settings import Setting, parse_input_size
from ovbench.profiling.targets import Target, resolve_target

__all__ = ["ProfileOptions", "Setting", "Target", "format_report", "parse_input_size", "profile", "resolve_target"]
