"""A scripted model for the researcher (``function:researcher_script:script``): it chooses the research
tool, plans by splitting the question at ", and", and writes as a faithful small model would, one
sentence copied from each of the first two passages, plus one invention the verifier must remove."""

from __future__ import annotations

import re
from typing import Any

from shopfloor.models import ModelRequest

INVENTED = "Python was first released by the BBC in 1975 as a teaching language for reptiles."


def sentence_of(prompt: str, number: int) -> str | None:
    """The first plain sentence of passage ``number`` as the writer's prompt shows it."""
    parts = prompt.split(f"[{number}] (", 1)
    if len(parts) < 2:
        return None
    block = re.split(r"\n\n\[\d+\] \(|\n\nQuestion:", parts[1].split("\n", 1)[1])[0]
    for sentence in re.split(r"(?<=[.!?])\s+", block.replace("\n", " ")):
        if 40 < len(sentence) < 280 and not re.search(r"[(>=\[]", sentence):
            return sentence.strip()
    return None


def script(request: ModelRequest) -> dict[str, Any]:
    assert request.json_schema is not None, "the researcher's loop and tool constrain every reply"
    props = request.json_schema["properties"]
    prompt = request.messages[-1].content
    if "tool" in props:
        return {"tool": "python__research"}
    if "sub_questions" in props:
        question = prompt.split("Question: ", 1)[1].split("\n", 1)[0]
        return {"sub_questions": [part.strip(" ?,") for part in question.split(", and")]}
    if "claims" in props:
        claims = [
            {"sentence": sentence, "source": n}
            for n in (1, 2)
            if (sentence := sentence_of(prompt, n)) is not None
        ]
        return {"claims": [*claims, {"sentence": INVENTED, "source": 1}]}
    raise AssertionError(f"unexpected schema: {sorted(props)}")
