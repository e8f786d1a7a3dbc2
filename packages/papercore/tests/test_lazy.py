import subprocess
import sys

import pytest


def test_lazy_names_resolve_once_and_unknown_names_raise():
    import papercore
    from papercore.models import load_model

    assert papercore.load_model is load_model
    assert "load_model" in vars(papercore)  # cached in the namespace after first use
    with pytest.raises(AttributeError, match="module 'papercore' has no attribute 'nope'"):
        _ = papercore.nope


def test_import_papercore_does_not_import_torch():
    code = "import sys, papercore; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
