"""litforge: a Lightning + Hydra experiment template."""

from pathlib import Path

__version__ = "0.1.0"

# the config groups, beside src/ in the repository (litforge is installed editable from it);
# an absolute path, so the entry points find them however they are started
CONF = Path(__file__).resolve().parents[2] / "conf"
