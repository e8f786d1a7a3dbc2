import os
import platform

import torch

from papercore import machine_info
from papercore.machine import cpu_name


def test_machine_info_names_cpu_threads_and_versions():
    info = machine_info(threads=3)
    assert info.startswith(f"{cpu_name()}, {os.cpu_count()} cores (3 torch threads), ")
    assert f"Python {platform.python_version()}" in info
    assert f"torch {torch.__version__}" in info
    assert ("no GPU" in info) != torch.cuda.is_available()


def test_machine_info_reads_torch_threads_by_default():
    n = torch.get_num_threads()
    assert f"({n} torch thread" in machine_info()


def test_bench_parser_has_out_and_the_docstring(tmp_path):
    from papercore.machine import bench_parser

    p = bench_parser("Bench X: does things.", tmp_path / "x.json")
    assert p.parse_args([]).out == tmp_path / "x.json"
    assert p.parse_args(["--out", "y.json"]).out.name == "y.json"
    assert "Bench X: does things." in p.format_help()
