"""Captions for Grounding DINO, planned from an ontology, with the token span of every phrase.

Grounding DINO scores each box against every token of its caption. To know which phrase a box belongs to we
record, while building the caption, which token positions each phrase occupies (its *span*). The caption
``"car . wheel . tire ."`` for an ontology {car: [car], wheel: [wheel, tire]} tokenises to::

    [CLS] car . wheel . tire . [SEP]
      0    1  2   3   4   5  6   7       spans: car=[1,2) -> class 0, wheel=[3,4) -> 1, tire=[5,6) -> 1

A phrase is tokenised on its own and its ids are placed in the caption, so the spans are exact (BERT's
WordPiece splits on white space and punctuation first, so this equals tokenising the whole caption: the
planner checks that it does). When the phrases do not fit in the text encoder's ``max_text_len`` tokens
(256 for the released checkpoints), they are packed greedily into several captions; each caption is one
row of a batched forward pass. Nothing is truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grounded.errors import InputError
from grounded.ontology import Ontology


@dataclass(frozen=True)
class Caption:
    """One caption: its text, token ids and, per phrase, the span of tokens it occupies."""

    text: str  # e.g. "car . wheel ."
    input_ids: tuple[int, ...]  # [CLS] ... [SEP]
    spans: tuple[tuple[int, int], ...]  # per phrase: (start, end) token positions, end exclusive
    phrases: tuple[str, ...]  # the phrases, in caption order
    class_ids: tuple[int, ...]  # ontology class id of each phrase


def plan_captions(ontology: Ontology, tokenizer: Any, max_text_len: int) -> list[Caption]:
    """Pack the ontology's phrases into as few captions of at most ``max_text_len`` tokens as possible."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    dot_id = tokenizer.convert_tokens_to_ids(".")
    captions: list[Caption] = []
    ids: list[int] = [cls_id]
    spans: list[tuple[int, int]] = []
    phrases: list[str] = []
    class_ids: list[int] = []

    def close() -> None:
        text = " . ".join(phrases) + " ."
        full = tuple(ids) + (sep_id,)
        check = tuple(tokenizer(text, add_special_tokens=True)["input_ids"])
        if check != full:  # would mean the tokenizer is not WordPiece-like; spans would be wrong
            raise InputError(f"tokenizer splits caption {text!r} differently from its phrases; cannot map spans")
        captions.append(Caption(text, full, tuple(spans), tuple(phrases), tuple(class_ids)))

    for phrase, class_id in ontology.phrases():
        tokens = tokenizer(phrase, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise InputError(f"phrase {phrase!r} has no tokens in the detector's vocabulary")
        if 1 + len(tokens) + 1 + 1 > max_text_len:
            raise InputError(
                f"phrase {phrase!r} is {len(tokens)} tokens long; the detector reads at most {max_text_len - 3} "
                "tokens per phrase: shorten it"
            )
        if len(ids) + len(tokens) + 1 + 1 > max_text_len:  # + "." + [SEP]
            close()
            ids, spans, phrases, class_ids = [cls_id], [], [], []
        spans.append((len(ids), len(ids) + len(tokens)))
        ids.extend(tokens)
        ids.append(dot_id)
        phrases.append(phrase)
        class_ids.append(class_id)
    close()
    return captions
