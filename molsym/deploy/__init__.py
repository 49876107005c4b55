"""Deploy files: a trained model as plain data (no pickled code).

See :mod:`molsym.deploy.model_file` for the format.
"""

from molsym.deploy.model_file import FORMAT_VERSION, load_model, read_model_file, save_model

__all__ = ["FORMAT_VERSION", "load_model", "read_model_file", "save_model"]
