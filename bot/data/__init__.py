"""Datasets: a registry of files with checksums, and fetching them into the data dir."""

from bot.data.registry import (
    DataCatalogue,
    DataFile,
    Dataset,
    MissingDataError,
    datasets,
    require,
)

__all__ = ["DataCatalogue", "DataFile", "Dataset", "MissingDataError", "datasets", "require"]
