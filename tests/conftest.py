import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

# Two logical CPUs for the MirroredStrategy tests (test_distribute.py): they must exist before TensorFlow
# initialises its devices. Ops still run on /cpu:0 unless a test places them; both share the thread pools.
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SRGAN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark sets beside the checkout (../shared/data): Set5/ and Set14/ with HR/ and LR_bicubic_x4/."""
    if not (SHARED_DATA / "Set5" / "HR").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (set SRGAN_SHARED_DATA)")
    return SHARED_DATA
