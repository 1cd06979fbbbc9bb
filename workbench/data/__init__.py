"""Data: measured-data loaders (and, beside them, sampling, generation and preprocessing).

Pure computation: never imports widgets or plotting.
"""

from .measured import DqConvention, Measurement, MeasurementError, Resampled, load_measurement, resample, save_orso

__all__ = ["DqConvention", "Measurement", "MeasurementError", "Resampled", "load_measurement", "resample", "save_orso"]
