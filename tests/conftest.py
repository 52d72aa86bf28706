import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SRGAN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark sets beside the checkout (../shared/data): Set5/ and Set14/ with HR/ and LR_bicubic_x4/."""
    if not (SHARED_DATA / "Set5" / "HR").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (set SRGAN_SHARED_DATA)")
    return SHARED_DATA
