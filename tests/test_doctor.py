"""`grounded doctor`: runs, prints JSON that parses, names the packages, and shows a missing extra as missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from email.message import Message

import pytest

from grounded import doctor
from grounded.cli import main as cli_main
from tests.conftest import REPO


def test_json_report_parses_and_names_the_packages(capsys):
    import torch

    assert doctor.main(["--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) == {"grounded", "python", "os", "packages", "extras", "torch", "cpu"}
    assert set(doctor.PACKAGES) <= set(r["packages"])
    assert r["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert r["python"]["version"] == "{}.{}.{}".format(*sys.version_info[:3])
    t, cpu = r["torch"], r["cpu"]
    assert t["version"] == torch.__version__ and t["threads"] == torch.get_num_threads()
    assert t["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert set(cpu["features"]) == set(doctor.CPU_FEATURES)
    assert cpu["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert all(set(e) == {"present", "missing"} for e in r["extras"].values())


def test_cli_text_report(capsys):
    assert cli_main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in doctor.PACKAGES + ("extras:", "device grounded would use:", "torch CPU capability:", "avx512_bf16"):
        assert name in out


FAKE_METADATA = """\
Name: grounded
Provides-Extra: serve
Provides-Extra: onnx
Provides-Extra: dev
Requires-Dist: numpy>=1.24
Requires-Dist: fastapi>=0.110; extra == "serve"
Requires-Dist: onnx>=1.15; extra == "onnx"
Requires-Dist: pytest>=8; extra == "dev"
Requires-Dist: grounded[onnx,serve]; extra == "dev"
"""


def test_missing_and_outdated_extras_are_shown(monkeypatch, capsys):
    meta = Message()
    for line in FAKE_METADATA.splitlines():
        key, value = line.split(": ", 1)
        meta[key] = value
    installed = {"numpy": "2.0", "onnx": "1.10", "pytest": "9.0"}  # fastapi missing, onnx too old
    monkeypatch.setattr(doctor.metadata, "metadata", lambda name: meta)
    monkeypatch.setattr(doctor, "_version", installed.get)

    extras = doctor.extras()
    assert extras == {
        "serve": {"present": False, "missing": ["fastapi>=0.110"]},
        "onnx": {"present": False, "missing": ["onnx>=1.15 (have 1.10)"]},
        "dev": {"present": False, "missing": ["fastapi>=0.110", "onnx>=1.15 (have 1.10)"]},  # via grounded[...]
    }
    installed.update(fastapi="0.120", onnx="1.17")
    assert all(e["present"] for e in doctor.extras().values())

    del installed["fastapi"]
    assert doctor.main([]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  transformers +missing$", out, re.M)  # not in `installed`
    assert re.search(r"^  serve +missing: fastapi>=0.110$", out, re.M)


def test_broken_torch_is_reported_not_raised(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    r = doctor.report()
    assert r["torch"]["error"].startswith("ModuleNotFoundError") and "torch" in r["torch"]["error"]
    assert r["cpu"]["model"] and "error" in r["cpu"]
    assert f"does not import: {r['torch']['error']}" in doctor.format_report(r)


@pytest.mark.parametrize("module", ["grounded.doctor", "grounded.cli.doctor"])
def test_importing_the_doctor_imports_no_heavy_package(module):
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
