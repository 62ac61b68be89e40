"""Training artifacts and seed-format folders -> BentoML model store."""

from model_store_import.importer import import_artifacts, write_version
from model_store_import.seed_format import import_seed_folder

__all__ = ["import_artifacts", "import_seed_folder", "write_version"]
