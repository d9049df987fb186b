"""Long work over MCP with the fake predictor and a tiny student: progress notifications, cancellation and
resume, one job per run, and train -> evaluate -> predict."""

from __future__ import annotations

import anyio
import pytest
from mcp_helpers import error_text, wait_done, with_client


def test_label_reports_progress_is_cancelled_with_its_call_and_resumes(fake_server, tmp_path):
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress, total, message):
        seen.append((progress, total))

    async def body(client):
        args = {"images": "images", "out": "run", "ontology": "animals", "wait": True}
        with anyio.move_on_after(0.7):  # the client gives up on the call: the run is cancelled with it
            await client.call_tool("label", args, progress_callback=on_progress)
        with anyio.fail_after(30):
            while (status := (await client.call_tool("run_status", {"run": "run"})).structured_content)[
                    "job"]["state"] == "running":
                await anyio.sleep(0.05)
        resumed = await client.call_tool("label", args)  # the same call again finishes the rest
        return status, await wait_done(client, resumed.structured_content["run"])

    cancelled, done = with_client(fake_server, body)
    assert cancelled["job"]["state"] == "cancelled" and cancelled["job"]["cancel_requested"]
    assert 0 < cancelled["counts"]["labelled"] < 8 and cancelled["counts"]["missing"] > 0
    counts = [p for p, _ in seen]
    assert counts == sorted(set(counts)) and seen[-1][1] == 8  # increasing, out of the 8 images
    assert done["job"]["state"] == "done" and done["counts"]["labelled"] == 8
    assert done["summary"]["resumed"] == cancelled["counts"]["labelled"]  # finished images were kept


def test_one_job_per_run_and_cancel_tool(fake_server):
    async def body(client):
        first = await client.call_tool("label", {"images": "images", "out": "run", "classes": "car"})
        second = await client.call_tool("label", {"images": "images", "out": "run", "classes": "car"})
        export = await client.call_tool("export", {"run": "run", "formats": ["voc"]})
        cancel = await client.call_tool("cancel", {"run": "run"})
        status = await wait_done(client, first.structured_content["run"])
        again = await client.call_tool("cancel", {"run": "run"})
        return second, export, cancel, status, again

    second, export, cancel, status, again = with_client(fake_server, body)
    for refused in (second, export):
        assert "is busy with a label job" in error_text(refused)
    assert cancel.structured_content["job"]["cancel_requested"] and status["job"]["state"] == "cancelled"
    assert "has no running job" in error_text(again)


def test_unknown_ontology_and_format_are_refused_before_any_job(fake_server):
    async def body(client):
        return (await client.call_tool("label", {"images": "images", "out": "r", "ontology": "nope"}),
                await client.call_tool("label", {"images": "images", "out": "r", "classes": "a", "formats": ["x"]}),
                await client.call_tool("models", {}))

    ontology, fmt, models = with_client(fake_server, body)
    assert "unknown ontology 'nope'" in error_text(ontology)
    assert "unknown export format" in error_text(fmt)
    assert models.structured_content["runs"] == []


@pytest.mark.slow
def test_train_evaluate_predict_a_student_on_a_label_run(fake_server, tmp_path):
    pytest.importorskip("onnx")
    steps: list[float] = []

    async def on_progress(progress, total, message):
        steps.append(progress)

    async def body(client):
        labelled = await client.call_tool("label", {"images": "images", "out": "labels", "classes": "car, wheel",
                                                    "formats": ["coco"], "wait": True})
        trained = await client.call_tool("train", {"dataset": labelled.structured_content["run"], "out": "student",
                                                   "size": "tiny", "epochs": 2, "image_size": 64, "batch_size": 4,
                                                   "wait": True}, progress_callback=on_progress)
        evaluated = await client.call_tool("evaluate", {"run": "student"})
        predicted = await client.call_tool("predict", {"model": "student/student.onnx", "out": "pred",
                                                       "images": ["images/img_00000.png", "images/img_00001.png"]})
        return trained.structured_content, evaluated, predicted

    trained, evaluated, predicted = with_client(fake_server, body)
    assert trained["kind"] == "train" and trained["job"]["state"] == "done", trained["job"]
    assert trained["summary"]["steps"] == trained["job"]["done"] > 0 and steps and steps == sorted(steps)
    assert (tmp_path / "student" / "student.onnx").is_file()
    assert not evaluated.is_error and "mIoU" in evaluated.structured_content["table"]
    assert (tmp_path / "student" / "eval" / "metrics.json").is_file()
    assert not predicted.is_error and len(predicted.structured_content["images"]) == 2
    assert [b.type for b in predicted.content] == ["text", "image"]  # show=1 picture attached
    assert (tmp_path / "pred" / "img_00000.json").is_file() and (tmp_path / "pred" / "img_00001.png").is_file()
