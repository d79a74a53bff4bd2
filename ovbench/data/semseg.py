"""Ground truth of an image semantic-segmentation protocol below ``--data-root``."""
from __future__ import annotations

from pathlib import Path

from ovbench.errors import OvbenchError
from ovbench.protocols.schema import Protocol


def preparation_hint(protocol: Protocol) -> str:
    """The command that writes this protocol's data."""
    if protocol.id.startswith("synth-"):
        return "run `ovbench data synth --out DIR` and pass --data-root DIR"
    return f"prepare {protocol.dataset} with `ovbench data prepare` and pass its --root as --data-root"


class SemsegGroundTruth:
    """The label files of ``protocol`` under ``data_root``, found through its layout template.

    The template's ``{id}`` splits it into a folder prefix and a file suffix; every file below
    the prefix folder ending in the suffix is one image, its id the path between the two.
    """

    def __init__(self, protocol: Protocol, data_root: Path | str) -> None:
        self.protocol = protocol
        self.data_root = Path(data_root)
        template = protocol.layout.labels
        if template.count("{id}") != 1:
            raise OvbenchError(f"protocol {protocol.id}: labels template {template!r} needs exactly one {{id}}")
        self._prefix, self._suffix = template.split("{id}")

    @property
    def folder(self) -> Path:
        return self.data_root / self._prefix

    def ids(self) -> list[str]:
        """Sorted image ids; raises when the folder is missing or empty."""
        if not self.folder.is_dir():
            raise OvbenchError(f"{self.folder}: ground-truth folder of {self.protocol.id} not found; "
                               f"{preparation_hint(self.protocol)}")
        ids = sorted(p.relative_to(self.folder).as_posix()[: -len(self._suffix)]
                     for p in self.folder.rglob(f"*{self._suffix}") if p.is_file())
        if not ids:
            raise OvbenchError(f"{self.folder}: no '*{self._suffix}' label files for {self.protocol.id}; "
                               f"{preparation_hint(self.protocol)}")
        return ids

    def label_path(self, image_id: str) -> Path:
        return self.protocol.layout.label_path(self.data_root, image_id)

    def image_path(self, image_id: str) -> Path:
        return self.protocol.layout.image_path(self.data_root, image_id)
