"""The dataset package stays torch-free, so the runtime can record rollouts with its writer."""

from __future__ import annotations

import subprocess
import sys


def test_dataset_package_does_not_import_torch():
    code = (
        "import sys; import edgeact.train.data, edgeact.train.data.cli, edgeact.train.data.frame_cache, "
        "edgeact.train.data.hdf5_import, edgeact.train.data.render, edgeact.train.data.synthetic; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
