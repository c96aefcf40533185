"""Runs the `cpu` workload of ../shared/bench/torch_reference.py (two-stream net, 2 threads,
batch 8, 112x112, modes none and compact) and prints its result as JSON on stdout.

Usage: python torch_cpu.py PATH/TO/torch_reference.py
"""
import contextlib, importlib.util, io, json, sys

ref = sys.argv[1]
spec = importlib.util.spec_from_file_location("torch_reference", ref)
mod = importlib.util.module_from_spec(spec)
with contextlib.redirect_stdout(io.StringIO()):
    spec.loader.exec_module(mod)
    res = mod.cpu_two_stream()
print(json.dumps(res))
