"""The schemes a grouper process knows, and which one is in force where and when (§4)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from .errors import RegistryError
from .registry import SchemeRegistry
from .scheme import Scheme, load_scheme


class SchemeBook:
    """The loaded schemes (by id, with their folders) and their registrations per region."""

    def __init__(self, default_scheme: str) -> None:
        self.default_scheme = default_scheme
        self.schemes: dict[str, Scheme] = {}
        self.paths: dict[str, str] = {}
        self.registry = SchemeRegistry()
        self.regions: set[str] = set()

    def load(self, path: str | Path) -> Scheme:
        """The scheme in the folder `path` (each folder is loaded once)."""
        path = str(Path(path).resolve())
        for sid, p in self.paths.items():
            if p == path:
                return self.schemes[sid]
        scheme = load_scheme(path)
        self.schemes[scheme.id] = scheme
        self.paths[scheme.id] = path
        return scheme

    def put(self, scheme: Scheme) -> None:
        """A scheme loaded from its folder elsewhere (off the event loop), now known by its id."""
        if scheme.path is None:
            raise ValueError("only a scheme loaded from a folder is kept in the book")
        self.schemes[scheme.id] = scheme
        self.paths[scheme.id] = str(Path(scheme.path).resolve())

    def load_folder(self, schemes_dir: Path) -> None:
        """Every scheme folder (with a scheme.json) in `schemes_dir`."""
        for sub in sorted(schemes_dir.iterdir()):
            if (sub / "scheme.json").is_file():
                self.load(sub)

    def register(self, scheme: Scheme, region: str, valid_from: date, valid_to: date | None) -> None:
        self.registry.add(scheme, region, valid_from, valid_to)
        self.regions.add(region)

    def scheme_for(self, region: str, discharge: date | None) -> Scheme | None:
        """The scheme in force; regions never registered use the default scheme."""
        if region in self.regions and discharge is not None:
            try:
                return self.registry.scheme_for(region, discharge)
            except RegistryError:
                return None
        return self.schemes.get(self.default_scheme)
