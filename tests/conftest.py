import os
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFRED_CELL_TIMEOUT", "900")      # chapter cells at quick scale
os.environ.setdefault("DIFFRED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
warnings.filterwarnings("ignore", category=UserWarning)
