"""Config: load `{stack}.asg.yaml` into frozen dataclasses (see model.py) and validate it."""
from .model import (  # noqa: F401
    DEFAULT_ACME_DIRECTORY,
    DEFAULT_SLUG,
    Cluster,
    Config,
    ModelConfig,
    Secret,
    StackSettings,
)
from .load import load_config  # noqa: F401
