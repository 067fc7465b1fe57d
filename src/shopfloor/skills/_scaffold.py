"""``shopfloor skill new NAME``: a skill that is valid, runs, and is ready to sign."""

from __future__ import annotations

import re
from pathlib import Path

from shopfloor.errors import SkillFormatError

__all__ = ["new_skill"]

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*\Z")

_SKILL_MD = """---
name: {name}
description: Describe in one or two sentences what {name} does and when the agent should use it.
license: Apache-2.0
metadata:
  version: "0.1.0"
---

# {name}

Instructions the agent reads once it has chosen this skill: what the input fields mean,
what the output contains, and an example call.

## Example

Input: `{{"text": "hello"}}`
Output: `{{"result": "HELLO"}}`
"""

_SIDECAR = """# Shopfloor's additions to the Agent Skill (the SKILL.md front matter stays spec-only).
entry: scripts/run.py
runtime: python
timeout: 30
input_schema:
  type: object
  properties:
    text: {type: string, description: the text to transform}
  required: [text]
  additionalProperties: false
output_schema:
  type: object
  properties:
    result: {type: string}
  required: [result]
# dependencies:
#   python: requirements.txt
"""

_RUN_PY = '''"""Entry point: one JSON object on stdin, one JSON object on stdout, logs on stderr."""

import json
import sys


def main() -> None:
    args = json.load(sys.stdin)
    print(json.dumps({"result": args["text"].upper()}))


if __name__ == "__main__":
    main()
'''


def new_skill(name: str, parent: Path) -> Path:
    """Create ``parent/name`` with SKILL.md, shopfloor.yaml and scripts/run.py."""
    if not _NAME.match(name) or len(name) > 64:
        raise SkillFormatError(
            f"skill name {name!r}: use 1-64 lowercase letters and digits, separated by single hyphens"
        )
    skill_dir = parent / name
    if skill_dir.exists():
        raise SkillFormatError(f"{skill_dir} already exists; choose another name or directory")
    (skill_dir / "scripts").mkdir(parents=True)
    (skill_dir / "SKILL.md").write_text(_SKILL_MD.format(name=name))
    (skill_dir / "shopfloor.yaml").write_text(_SIDECAR)
    (skill_dir / "scripts" / "run.py").write_text(_RUN_PY)
    return skill_dir
