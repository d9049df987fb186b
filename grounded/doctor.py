"""``grounded doctor``: the facts about this installation that a bug report needs, in one place.

    grounded doctor                 # or: python -m grounded.doctor
    grounded doctor --json          # one JSON object (see :func:`report` for its keys)

It prints grounded's, Python's and the OS's versions; the versions of the packages grounded is built on;
each optional extra as present or missing (naming what is missing); torch's CUDA build, GPUs, the device
grounded would use and its thread counts; the CPU model and the instruction sets that decide CPU speed
(AVX2, AVX-512, AVX512_BF16, AMX; native bf16 is what ``autocast="auto"`` looks for).

Package versions and extras are read with :mod:`importlib.metadata`, which imports nothing. Nothing runs at
import time; torch is imported when the report is made, and a failure there (a broken install is when this
command is needed most) is reported in place of the torch section instead of ending the report.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

# The packages grounded is built on, in the order they are printed (distribution names).
PACKAGES = ("torch", "torchvision", "transformers", "supervision", "opencv-python-headless", "numpy",
            "pycocotools", "pillow", "safetensors", "scipy")
# Other wheels that also install the `cv2` module; two of them in one environment overwrite each other.
OTHER_OPENCV = ("opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless")
# CPU flags (as /proc/cpuinfo names them) that decide which kernels torch and oneDNN run.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """{distribution name: installed version, or None where missing}: :data:`PACKAGES`, plus any other cv2 wheel."""
    versions = {name: _version(name) for name in PACKAGES}
    versions.update({name: v for name in OTHER_OPENCV if (v := _version(name)) is not None})
    return versions


def extras(distribution: str = "grounded") -> dict[str, dict[str, Any]]:
    """{extra: {"present": bool, "missing": [requirements not met]}} for each extra of the installed package.

    A requirement is met when its distribution is installed at a version its specifier allows; an extra that
    names other extras of the package itself (``dev``) is met when theirs are. Empty where the package has no
    installed metadata (run from a source tree without ``pip install -e .``).
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        meta = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        return {}
    own = canonicalize_name(distribution)
    requirements = [Requirement(line) for line in meta.get_all("Requires-Dist") or []]

    def unmet(extra: str, seen: frozenset[str]) -> list[str]:
        missing: list[str] = []
        for req in requirements:
            if req.marker is None or not req.marker.evaluate({"extra": extra}) or req.marker.evaluate({"extra": ""}):
                continue  # a core requirement, another extra's, or not for this platform
            if canonicalize_name(req.name) == own:
                for sub in sorted(req.extras - seen):
                    missing += unmet(sub, seen | {sub})
                continue
            installed = _version(req.name)
            if installed is None or not req.specifier.contains(installed, prereleases=True):
                missing.append(f"{req.name}{req.specifier}" + (f" (have {installed})" if installed else ""))
        return sorted(set(missing))

    out = {}
    for extra in meta.get_all("Provides-Extra") or []:
        missing = unmet(extra, frozenset({extra}))
        out[extra] = {"present": not missing, "missing": missing}
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count()


def torch_and_cpu() -> dict[str, Any]:
    """{"torch": {...}, "cpu": {...}}: imports torch; its error in place of both sections where that fails."""
    try:
        import torch

        from grounded.models.acceleration import cpu_flags, cpu_has_native_bf16
        from grounded.models.loading import resolve_device
    except Exception as exc:  # a broken torch is a finding to report, not a crash
        error = {"error": f"{type(exc).__name__}: {exc}"}
        return {"torch": error, "cpu": {"model": _cpu_model(), **error}}
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    torch_info = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": bool(mps is not None and mps.is_available()),
        "device": str(resolve_device(None)),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
    }
    flags = cpu_flags()
    cpu_info = {
        "model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        # None where the flags cannot be read (no /proc/cpuinfo: macOS, Windows); torch_capability still says
        "features": {name: (name in flags) if flags else None for name in CPU_FEATURES},
        "native_bf16": cpu_has_native_bf16(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }
    return {"torch": torch_info, "cpu": cpu_info}


def report() -> dict[str, Any]:
    """Everything ``grounded doctor`` prints, as JSON-ready data.

    Keys: ``grounded`` (version, location), ``python``, ``os``, ``packages`` ({name: version or None}),
    ``extras`` ({extra: {present, missing}}), ``torch`` (version, cuda_build, cuda_available, gpus,
    mps_available, device, threads, interop_threads, thread_env), ``cpu`` (model, logical_cpus, usable_cpus,
    features {flag: bool or None}, native_bf16, torch_capability); ``torch``/``cpu`` hold ``error`` instead
    where torch does not import.
    """
    import grounded

    return {
        "grounded": {"version": grounded.__version__, "location": str(Path(grounded.__file__).resolve().parent)},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"platform": platform.platform(), "machine": platform.machine()},
        "packages": package_versions(),
        "extras": extras(),
        **torch_and_cpu(),
    }


def _yes(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def format_report(r: dict[str, Any]) -> str:
    """The report as aligned text, for pasting into an issue."""
    py, t, cpu = r["python"], r["torch"], r["cpu"]
    lines = [f"grounded {r['grounded']['version']} ({r['grounded']['location']})",
             f"Python {py['version']} ({py['implementation']}, {py['executable']})",
             f"OS {r['os']['platform']}", "", "packages:"]
    lines += [f"  {name:<24} {version or 'missing'}" for name, version in r["packages"].items()]
    lines += ["", "extras:"] + [f"  {name:<12} " + ("present" if e["present"] else "missing: " + ", ".join(e["missing"]))
                                for name, e in r["extras"].items()]
    if not r["extras"]:
        lines.append("  unknown (grounded has no installed metadata: `pip install -e .` in the checkout)")
    lines += ["", "torch:"]
    if "error" in t:
        lines.append(f"  does not import: {t['error']}")
    else:
        gpus = ", ".join(t["gpus"]) or "none"
        lines += [f"  CUDA build {t['cuda_build'] or 'none (CPU wheel)'}, CUDA available {_yes(t['cuda_available'])}, "
                  f"GPUs: {gpus}, MPS available {_yes(t['mps_available'])}",
                  f"  device grounded would use: {t['device']}",
                  f"  threads {t['threads']} (inter-op {t['interop_threads']})"
                  + "".join(f", {k}={v}" for k, v in t["thread_env"].items())]
    lines += ["", "cpu:", f"  {cpu['model']}"]
    if "error" not in cpu:
        lines += [f"  CPUs: {cpu['usable_cpus']} usable of {cpu['logical_cpus']}",
                  "  features: " + ", ".join(f"{k} {_yes(v)}" for k, v in cpu["features"].items()),
                  f"  native bf16: {_yes(cpu['native_bf16'])}; torch CPU capability: {cpu['torch_capability']}"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    r = report()
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grounded.doctor", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
