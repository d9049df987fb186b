"""``grounded serve``: a REST API and a web page to segment by text and to review a labelled run.

::

    pip install "grounded[serve]"
    grounded serve                                   # http://127.0.0.1:8000  (page, /docs, /v1/...)
    grounded serve --run labelled/ --offline --detector ./gdino --segmenter ./sam

One process (FastAPI + uvicorn). The models load on the first segment request, with the flags and errors of
``grounded segment``; requests that use them run one at a time (:mod:`grounded.serve.engine`), at most
``--max-queue`` admitted at once (:mod:`grounded.serve.admission`). The page is
static HTML/CSS/JS in ``static/`` (no build step, no CDN). With ``--run OUT`` the page's Review tab browses
a ``grounded label`` run and writes corrections to ``OUT/reviews/`` (:mod:`grounded.label.reviews`), which
``grounded export`` applies. Endpoints: :mod:`grounded.serve.app`; what is refused: :mod:`grounded.serve.security`.
"""

SERVE_EXTRA = 'pip install "grounded[serve]"'


def require_serve_extra() -> None:
    """Raise InputError naming the extra when FastAPI, uvicorn or python-multipart is missing."""
    import importlib.util

    from grounded.errors import InputError

    found = {m: importlib.util.find_spec(m) is not None for m in ("fastapi", "uvicorn", "python_multipart", "multipart")}
    missing = [m for m in ("fastapi", "uvicorn") if not found[m]]
    if not (found["python_multipart"] or found["multipart"]):  # python-multipart < 0.0.13 is `multipart`
        missing.append("python-multipart")
    if missing:
        raise InputError(f"grounded serve needs {', '.join(missing)}: {SERVE_EXTRA}")
