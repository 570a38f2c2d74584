"""The Python folders install under one namespace, and the runtime side never pulls in torch."""

import subprocess
import sys


def test_namespace_imports():
    import edgeact.export
    import edgeact.firmware_bridge
    import edgeact.runtime
    import edgeact.train

    for mod in (edgeact.train, edgeact.export, edgeact.runtime, edgeact.firmware_bridge):
        assert mod.__name__.startswith("edgeact.")


def test_no_generic_top_level_modules(tmp_path):
    # Run outside the source tree: only what the install provides is importable there.
    code = (
        "import importlib.util as u; "
        "print([n for n in ('train', 'runtime', 'export', 'firmware_bridge', 'configs') if u.find_spec(n)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]"


def test_runtime_import_does_not_import_torch():
    code = "import sys, edgeact.runtime, edgeact.firmware_bridge; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
