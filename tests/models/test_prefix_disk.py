"""Prompt states on disk: read back by a later process, bounded, and never trusted when damaged."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.models import LoadedWeights, LocalModel, Message, ModelRequest
from shopfloor.models._local import make_local_model
from shopfloor.models._prefix_disk import (
    _HEADER,
    SUFFIX,
    DiskPrefixCache,
    PromptCache,
    identity,
    weights_sha256,
)

KEY = identity("0" * 64, {"n_ctx": 4096})
PREFIX = list(range(100, 400))


def cache(directory: Path, *, key: bytes = KEY, limit: int = 1 << 20) -> DiskPrefixCache:
    return DiskPrefixCache(directory, key, limit_bytes=limit)


def files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def test_a_saved_state_is_read_back_by_the_prompt_sharing_most_with_it(tmp_path: Path) -> None:
    writer = cache(tmp_path)
    writer.save([*PREFIX, 1, 2, 3], b"state-a" * 100)
    writer.save([*PREFIX[:50], 9, 9], b"state-b" * 100)
    reader = cache(tmp_path)  # another process
    found = reader.best([*PREFIX, 7, 8], shared=0)
    assert found is not None
    assert found.tokens == (*PREFIX, 1, 2, 3)
    assert found.data == b"state-a" * 100
    # A state must share more than the context already holds.
    assert reader.best([*PREFIX, 7, 8], shared=len(PREFIX)) is None
    assert reader.best([5, 6, 7], shared=0) is None
    assert reader.loads == 1


def test_saving_the_same_tokens_twice_writes_one_file(tmp_path: Path) -> None:
    writer = cache(tmp_path)
    writer.save(PREFIX, b"x" * 10)
    writer.save(PREFIX, b"x" * 10)
    assert writer.saves == 1
    assert len(files(tmp_path)) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_the_directory_stays_under_its_limit_least_recently_used_first(tmp_path: Path) -> None:
    size = 40_000
    one_file = _HEADER.size + 4 * (len(PREFIX) + 1) + size
    writer = cache(tmp_path, limit=3 * one_file + 100)  # room for three
    for n in range(3):
        writer.save([n, *PREFIX], bytes([n]) * size)
        os.utime(writer._path([n, *PREFIX]), ns=(n * 10**9, n * 10**9))  # saved in this order
    assert writer.best([0, *PREFIX], shared=0) is not None  # read: now the most recently used
    writer.save([3, *PREFIX], b"\x03" * size)
    reader = cache(tmp_path)
    assert [reader.best([n, *PREFIX], shared=0) is not None for n in range(4)] == [True, False, True, True]
    assert sum(p.stat().st_size for p in files(tmp_path)) <= writer.limit_bytes


def test_a_state_over_the_whole_limit_is_not_saved(tmp_path: Path) -> None:
    writer = cache(tmp_path, limit=1000)
    writer.save(PREFIX, b"y" * 5000)
    assert files(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "old version"])
def test_a_damaged_file_is_removed_and_not_used(tmp_path: Path, damage: str) -> None:
    cache(tmp_path).save(PREFIX, b"z" * 4096)
    (path,) = files(tmp_path)
    blob = bytearray(path.read_bytes())
    if damage == "truncated":
        del blob[-100:]
    elif damage == "flipped":
        blob[-10] ^= 0xFF
    elif damage == "garbage":
        blob = bytearray(b"not a state at all")
    else:
        blob[4:8] = (99).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    assert cache(tmp_path).best(PREFIX, shared=0) is None
    assert files(tmp_path) == []


def test_a_state_of_other_weights_or_settings_is_left_alone(tmp_path: Path) -> None:
    cache(tmp_path).save(PREFIX, b"w" * 100)
    other = cache(tmp_path, key=identity("0" * 64, {"n_ctx": 2048}))
    assert other.best(PREFIX, shared=0) is None
    assert len(files(tmp_path)) == 1  # another model's, not damaged
    assert cache(tmp_path).best(PREFIX, shared=0) is not None


def test_an_unwritable_directory_loses_the_state_not_the_request(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the directory should be")
    writer = cache(blocker / "states")
    writer.save(PREFIX, b"v" * 100)
    assert writer.saves == 0
    assert writer.best(PREFIX, shared=0) is None


def test_the_weights_digest_is_computed_once_and_remembered(tmp_path: Path) -> None:
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF" + b"\0" * 1000)
    assert weights_sha256(weights, tmp_path / "c") == hashlib.sha256(weights.read_bytes()).hexdigest()
    (memo,) = (tmp_path / "c").glob("weights-*.sha256")
    memo.write_text("f" * 64)  # the remembered value is what is read next time
    assert weights_sha256(weights, tmp_path / "c") == "f" * 64


def test_the_setting_sizes_the_cache_and_zero_turns_it_off(tmp_path: Path) -> None:
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF")
    on = make_local_model(str(weights), Settings(home=tmp_path))
    assert isinstance(on, LocalModel) and on.prompt_cache is not None
    assert on.prompt_cache.directory == tmp_path / "cache" / "prompt-states"
    assert on.prompt_cache.limit_bytes == 256 << 20
    off = make_local_model(
        str(weights), Settings.model_validate({"home": tmp_path, "models": {"prompt_cache_mb": 0}})
    )
    assert isinstance(off, LocalModel) and off.prompt_cache is None


MODEL = "qwen2.5-coder-0.5b"
SYSTEM = Message(
    role="system",
    content="You are a data analyst. Files: seattle-weather.csv (date, precipitation, temp_max, temp_min, "
    "wind, weather); cars.json (Name, Miles_per_Gallon, Cylinders, Horsepower, Origin). Reply with JSON "
    "naming the file for the question.",
)
SCHEMA = {"type": "object", "properties": {"file": {"enum": ["seattle-weather.csv", "cars.json"]}}}


def ask(question: str) -> ModelRequest:
    messages = (SYSTEM, Message(role="user", content=question))
    return ModelRequest(messages=messages, json_schema=SCHEMA, max_tokens=16, cache_prefix=1)


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_a_new_process_starts_from_the_saved_prefix_and_answers_as_a_cold_one(
    embedded_model: Callable[[str], Path], tmp_path: Path
) -> None:
    path = embedded_model(MODEL)
    on_disk = PromptCache(directory=tmp_path, limit_bytes=64 << 20)

    def process(prompt_cache: PromptCache | None, context_length: int = 4096) -> LocalModel:
        # A fresh LoadedWeights is what a new process has: nothing in memory.
        return LocalModel(
            MODEL,
            path=path,
            threads=1,
            weights=LoadedWeights(),
            prompt_cache=prompt_cache,
            context_length=context_length,
        )

    first = await process(on_disk).request(ask("How windy was Seattle?"))
    assert first.usage.cached_input_tokens == 0
    assert len(files(tmp_path)) == 1

    question = "What is the mean horsepower of the cars?"
    second = process(on_disk)
    warm = await second.request(ask(question))
    assert second.llama.prefixes.disk.loads == 1  # type: ignore[attr-defined]
    assert warm.usage.cached_input_tokens >= first.usage.input_tokens - 16
    assert warm.usage.input_tokens - warm.usage.cached_input_tokens < 40
    assert len(files(tmp_path)) == 1  # the loaded state covers the prefix: nothing new saved

    cold = await process(None).request(ask(question))
    assert cold.usage.cached_input_tokens == 0
    assert warm.text == cold.text

    # Another context length makes another KV cache: the saved state is not used, nor removed.
    other = await process(on_disk, context_length=2048).request(ask(question))
    assert other.usage.cached_input_tokens == 0
    assert other.text == cold.text

    # A damaged file is removed and the request evaluates the whole prompt.
    for saved in files(tmp_path):
        saved.write_bytes(saved.read_bytes()[:-4096])
    damaged = await process(on_disk).request(ask(question))
    assert damaged.usage.cached_input_tokens == 0
    assert damaged.text == cold.text
