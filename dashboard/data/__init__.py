"""Data access for the dashboard: MLflow metadata, an incremental series cache, reports, and
shape-keeping downsampling. Importing this package imports neither MLflow nor Dash."""

from dashboard.data.cache import SeriesCache
from dashboard.data.downsample import Downsampled, downsample, ema
from dashboard.data.reports import ReportCache
from dashboard.data.service import DashboardData, LoadedRun
from dashboard.data.tracking import DataError, RunSummary

__all__ = [
    "DashboardData",
    "DataError",
    "Downsampled",
    "LoadedRun",
    "ReportCache",
    "RunSummary",
    "SeriesCache",
    "downsample",
    "ema",
]
