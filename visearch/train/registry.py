"""Model registry on the artifacts store: versions, their files, and the champion pointer.

Layout under ``<artifacts>/``::

    models/<version>/model.pt               state dict (load with weights_only=True)
    models/<version>/model.torchscript.pt   TorchScript export, runs without this repository
    models/<version>/config.json            architecture, preprocessing, inputs, git sha, checksums
    models/CHAMPION                         pointer: the promoted version

``config.json`` is written last, so a version is listed only once it is complete. Versions are
``v-<ds>-<8 hex>``: sortable by day, and the hex is a hash of the weights and the configuration,
so saving the same model with the same configuration gives the same version.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from visearch.core.provenance import git_sha
from visearch.core.storage import ObjectStore, sha256_bytes
from visearch.train.model import Architecture, EmbeddingModel, unwrap
from visearch.train.preprocess import Preprocessing, preprocess

log = logging.getLogger(__name__)

MODELS = "models"
CHAMPION = "CHAMPION"  # the name that means "the promoted version" wherever a version is asked for
CHAMPION_KEY = f"{MODELS}/{CHAMPION}"
PROMOTION_RECORD = "promotion.json"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION_DS = re.compile(r"^v-(\d{4}-\d{2}-\d{2})-[0-9a-f]+$")
_EXPORT_TOLERANCE = 1e-5
# Wall-clock measurements of one training run: recorded in config.json, left out of the version's
# content hash, so that the same data, seed and code name the same version on every rerun.
WALL_CLOCK_KEYS = frozenset({"images_per_sec", "train_seconds"})


class NoChampionError(LookupError, ValueError):
    """The champion was asked for and none has been promoted yet.

    A :class:`LookupError` (nothing to look up); also a :class:`ValueError`, which callers of the
    registry raised for the same case before :meth:`ModelRegistry.resolve` existed.
    """


class UnknownVersionError(FileNotFoundError, ValueError):
    """A named model version is not a complete version of the registry.

    A :class:`FileNotFoundError` like :meth:`ModelRegistry.config`'s, and a :class:`ValueError`
    (a bad argument) for callers that check arguments.
    """


def state_dict_hash(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def versions_of_day(versions: Iterable[str], ds: str) -> list[str]:
    """The registry versions trained for ``ds`` (named ``v-<ds>-<hex>`` by :meth:`ModelRegistry.save`), sorted."""
    return sorted(v for v in versions if (m := _VERSION_DS.match(v)) and m.group(1) == ds)


def _check_version(version: str) -> str:
    if not _VERSION_RE.match(version) or version == "CHAMPION":
        raise ValueError(f"invalid model version {version!r}: use letters, digits, '.', '_' and '-'")
    return version


def _export(model: EmbeddingModel) -> torch.jit.ScriptModule:
    """Script (or, failing that, trace) the eval model and check it against eager on random input.

    Raises:
        RuntimeError: when the export's embeddings differ from eager by more than 1e-5.
    """
    size = model.arch.image_size
    example = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))  # (3, 3, S, S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, still supported
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        try:
            exported: torch.jit.ScriptModule = torch.jit.script(model)
        except Exception as exc:  # some backbones do not script; tracing covers them
            log.info("torch.jit.script failed (%s); tracing instead", exc)
            exported = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
    with torch.inference_mode():
        for batch in (example, example[:2]):  # two batch sizes: a trace must not bake one in
            eager = model(batch)  # (N, D)
            scripted = exported(batch)  # (N, D)
            diff = float((eager - scripted).abs().max())
            if diff > _EXPORT_TOLERANCE:
                raise RuntimeError(
                    f"TorchScript export differs from eager by {diff:.3g} > {_EXPORT_TOLERANCE}"
                )
    return exported


@dataclass
class LoadedModel:
    """A model version ready to embed: eval-mode model, its preprocessing and configuration."""

    model: nn.Module
    prep: Preprocessing
    config: dict[str, Any]
    version: str
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - immutable default

    @property
    def embed_dim(self) -> int:
        """Size of the embeddings."""
        return int(self.config["embed_dim"])

    def embed_tensors(self, batch: torch.Tensor, *, amp: bool = False) -> np.ndarray:
        """Embed preprocessed inputs ``(N, 3, S, S)`` into float32 unit vectors ``(N, D)``.

        Args:
            batch: inputs from :func:`visearch.train.preprocess.preprocess`, stacked.
            amp: bf16 autocast (CUDA only).

        Raises:
            ValueError: when the batch is not ``(N, 3, size, size)``.
        """
        size = self.prep.size
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, size, size):
            raise ValueError(f"expected a batch (N, 3, {size}, {size}), got {tuple(batch.shape)}")
        if batch.shape[0] == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        x = batch.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=amp):
            out = self.model(x)  # (N, D)
        return np.ascontiguousarray(out.float().cpu().numpy(), dtype=np.float32)

    def embed_images(
        self,
        images: Sequence[bytes | Image.Image],
        crops: Sequence[Sequence[int] | None] | None = None,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Preprocess and embed images (optionally each with a crop box) → ``(N, D)`` float32.

        Raises:
            ValueError: when ``crops`` does not match ``images`` in length, for an invalid crop
                box, or an image that does not decode.
        """
        if crops is not None and len(crops) != len(images):
            raise ValueError(f"{len(crops)} crops for {len(images)} images")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        chunks = []
        for start in range(0, len(images), batch_size):
            tensors = [
                preprocess(img, self.prep, crops[start + i] if crops is not None else None)
                for i, img in enumerate(images[start : start + batch_size])
            ]
            chunks.append(self.embed_tensors(torch.stack(tensors)))  # (n, 3, S, S) -> (n, D)
        if not chunks:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(chunks)


class ModelRegistry:
    """Model versions under ``models/`` of an object store (usually ``settings.artifacts``)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def _key(version: str, name: str) -> str:
        return f"{MODELS}/{_check_version(version)}/{name}"

    def save(self, model: nn.Module, *, config: Mapping[str, Any], version: str | None = None) -> str:
        """Write a new model version and return its name.

        Args:
            model: an :class:`EmbeddingModel` (DDP-wrapped is fine); it is not modified.
            config: what describes the run: ``ds`` (required, YYYY-MM-DD) and e.g. ``steps``,
                ``final_loss``, ``training_tables`` (Delta versions of the inputs), metrics.
            version: an explicit name; default ``v-<ds>-<8 hex of weights + config>``.

        Raises:
            ValueError: without a valid ``ds``, with a model that is not an EmbeddingModel, or when
                ``config`` contradicts the model's architecture.
            RuntimeError: when the TorchScript export does not reproduce the eager embeddings.
        """
        inner = unwrap(model)
        if not isinstance(inner, EmbeddingModel):
            raise ValueError(f"expected an EmbeddingModel, got {type(inner).__name__}")
        ds = str(config.get("ds", ""))
        try:
            date.fromisoformat(ds)
        except ValueError as exc:
            raise ValueError(f"config needs 'ds' as YYYY-MM-DD, got {ds!r}") from exc
        arch = inner.arch.to_dict()
        for key, value in arch.items():
            if key in config and config[key] != value:
                raise ValueError(f"config says {key}={config[key]!r} but the model has {value!r}")
        eval_model = copy.deepcopy(inner).cpu().eval()
        eval_model = eval_model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        state = {k: v.detach().cpu().contiguous() for k, v in eval_model.state_dict().items()}
        described = {**dict(config), **arch, "preprocessing": inner.prep.to_dict()}
        hashed = {k: v for k, v in described.items() if k not in WALL_CLOCK_KEYS}
        content = state_dict_hash(state) + json.dumps(hashed, sort_keys=True, default=str)
        content_hash = hashlib.sha256(content.encode()).hexdigest()
        version = _check_version(version or f"v-{ds}-{content_hash[:8]}")
        existing = self._key(version, "config.json")
        if (
            self.store.exists(existing)
            and json.loads(self.store.get_text(existing)).get("content_hash") == content_hash
        ):
            log.info("model %s already saved with the same weights and config", version)
            return version

        exported = _export(eval_model)
        files: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="visearch-model-") as tmp:
            weights = Path(tmp) / "model.pt"
            torch.save(state, weights)
            files["model.pt"] = self.store.put_file(self._key(version, "model.pt"), weights)
            script = Path(tmp) / "model.torchscript.pt"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
                torch.jit.save(exported, str(script))
            files["model.torchscript.pt"] = self.store.put_file(
                self._key(version, "model.torchscript.pt"), script
            )
        record = {
            **described,
            "version": version,
            "created_ds": ds,
            "git_sha": git_sha(),
            "content_hash": content_hash,
            "files": files,
            "export": {"format": "torchscript", "checked_max_abs_diff": _EXPORT_TOLERANCE},
        }
        self.store.put_text(
            self._key(version, "config.json"), json.dumps(record, indent=2, sort_keys=True, default=str)
        )
        log.info(
            "saved model %s (%s, dim %d) to %s",
            version,
            arch["backbone"],
            arch["embed_dim"],
            self.store.uri(f"{MODELS}/{version}"),
        )
        return version

    def config(self, version: str) -> dict[str, Any]:
        """The ``config.json`` of a version.

        Raises:
            FileNotFoundError: for a version that does not exist (or is incomplete).
        """
        key = self._key(version, "config.json")
        if not self.store.exists(key):
            raise FileNotFoundError(f"no model version {version!r} under {self.store.uri(MODELS)}")
        data: dict[str, Any] = json.loads(self.store.get_text(key))
        return data

    def _verified_bytes(self, version: str, name: str, config: Mapping[str, Any]) -> bytes:
        data = self.store.get_bytes(self._key(version, name))
        expected = config.get("files", {}).get(name)
        if expected and sha256_bytes(data) != expected:
            raise ValueError(f"{self.store.uri(self._key(version, name))} fails its sha256 check")
        return data

    def load(self, version: str, *, device: str | torch.device = "cpu") -> LoadedModel:
        """Rebuild a version's eager model from its state dict (``weights_only=True``).

        Raises:
            FileNotFoundError: for an unknown version.
            ValueError: when a file fails its checksum.
        """
        config = self.config(version)
        arch = Architecture.from_dict(config)
        prep = Preprocessing.from_dict(config["preprocessing"])
        model = EmbeddingModel(arch.backbone, arch.embed_dim, arch.image_size, arch.small_stem, prep=prep,
                               width=arch.width)
        data = self._verified_bytes(version, "model.pt", config)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        target = torch.device(device)
        model.to(target).eval()
        if target.type == "cuda":
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return LoadedModel(model, prep, config, version, target)

    def load_exported(self, version: str, *, device: str | torch.device = "cpu") -> LoadedModel:
        """Load a version's TorchScript export (no repository classes involved in the model).

        Raises:
            FileNotFoundError: for an unknown version.
            ValueError: when the file fails its checksum.
        """
        config = self.config(version)
        target = torch.device(device)
        data = self._verified_bytes(version, "model.torchscript.pt", config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
            module = torch.jit.load(io.BytesIO(data), map_location=target)  # type: ignore[no-untyped-call]
        module.eval()
        prep = Preprocessing.from_dict(config["preprocessing"])
        return LoadedModel(module, prep, config, version, target)

    def versions(self) -> list[str]:
        """Complete versions (those with a ``config.json``), sorted."""
        found = set()
        for key in self.store.list(f"{MODELS}/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "config.json":
                found.add(parts[1])
        return sorted(found)

    def champion(self) -> str | None:
        """The promoted version, or ``None`` before any promotion."""
        return self.store.read_pointer(CHAMPION_KEY)

    def resolve(self, version: str | None) -> str:
        """The complete version that ``version`` names: ``None`` or ``"CHAMPION"`` mean the champion.

        The one place the word ``CHAMPION`` is understood (a DAG's ``--model-version CHAMPION``,
        a CLI's default).

        Raises:
            NoChampionError: (a LookupError and ValueError) when the champion is asked for and none
                has been promoted yet.
            UnknownVersionError: (a FileNotFoundError and ValueError) when a named version is not a
                complete version.
            ValueError: when a named version is not a valid version name.
        """
        if version is None or version == CHAMPION:
            champion = self.champion()
            if champion is None:
                raise NoChampionError(f"no champion: {self.store.uri(CHAMPION_KEY)} is not set: train and "
                                      "promote a model first (the nightly DAG does both)")
            return champion
        if not self.store.exists(self._key(version, "config.json")):
            raise UnknownVersionError(f"model version {version!r} does not exist under {self.store.uri(MODELS)}/")
        return version

    def newest_of_day(self, ds: str) -> str | None:
        """The last (in name order) complete version trained for ``ds``, or ``None``."""
        found = versions_of_day(self.versions(), ds)
        return found[-1] if found else None

    def promotion_record(self, version: str) -> dict[str, Any] | None:
        """The recorded promotion decision of ``version`` (``models/<version>/promotion.json``), if any."""
        key = self._key(version, PROMOTION_RECORD)
        if not self.store.exists(key):
            return None
        data: dict[str, Any] = json.loads(self.store.get_text(key))
        return data

    def promotion_record_uri(self, version: str) -> str:
        """Where the promotion decision of ``version`` is (or would be) recorded."""
        return self.store.uri(self._key(version, PROMOTION_RECORD))

    def write_promotion_record(self, version: str, record: Mapping[str, Any]) -> str:
        """Write ``models/<version>/promotion.json`` and return its URI."""
        key = self._key(version, PROMOTION_RECORD)
        self.store.put_text(key, json.dumps(dict(record), indent=2, sort_keys=True))
        return self.store.uri(key)

    def set_champion(self, version: str) -> None:
        """Point ``models/CHAMPION`` at ``version`` (written last, atomically).

        Raises:
            ValueError: when the version does not exist.
        """
        if not self.store.exists(self._key(version, "config.json")):
            raise ValueError(f"cannot promote {version!r}: no such complete model version")
        self.store.write_pointer(CHAMPION_KEY, version)
        log.info("champion is now %s", version)
