"""Video: what a text prompt names, tracked through a video at flat memory, exported to tracking formats.

- :mod:`grounded.video.frames`: frames streamed from a video file (PyAV) or a folder of numbered frames.
- :mod:`grounded.video.interfaces`: the video roles (a box-prompted video segmenter, a concept video model).
- :mod:`grounded.video.tracks`: track ids within a chunk (admission by mask IoU, ending lost tracks).
- :mod:`grounded.video.chunks`: overlapping chunks, ids stitched across them, resume per chunk.
- :mod:`grounded.video.predictor`: :class:`~grounded.video.predictor.VideoPredictor` composes the backends.
- :mod:`grounded.video.backends`: SAM 2 / EdgeTAM video and SAM 3 video over transformers.
- :mod:`grounded.video.export`: MOT, MOTS, YouTube-VIS JSON, PNG id maps, annotated MP4.
- :mod:`grounded.video.run`: ``grounded.track`` and ``grounded track``: a video or a folder of videos, resumable.

Nothing is imported or loaded until used.
"""
