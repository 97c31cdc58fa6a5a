import os
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFRED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
warnings.filterwarnings("ignore", category=UserWarning)
