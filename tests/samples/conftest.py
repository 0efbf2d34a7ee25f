"""Fixtures for the sample-run tests: the manifest and the runs, read once per session."""

from __future__ import annotations

import pytest

from lrwatch.samples import load_manifest, load_samples, samples_dir


@pytest.fixture(scope="session")
def manifest() -> dict:
    return load_manifest()


@pytest.fixture(scope="session")
def sample_folder():
    return samples_dir()


@pytest.fixture(scope="session")
def sample_runs() -> dict:
    """Sample name -> Run, read from the files."""
    return {run.name: run for run in load_samples()}
