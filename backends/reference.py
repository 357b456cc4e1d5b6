"""refquant itself as a backend: ``reference`` (profile "spec") and ``reference-ort`` (profile "onnxruntime")."""

from __future__ import annotations

import numpy as np
from onnx import ModelProto

import refquant
from refquant.errors import OpsetError, RefquantError, UnsupportedOpError
from refquant.model import MIN_OPSET
from refquant.registry import DEFAULT_DOMAIN, MAX_OPSET, MS_DOMAIN

from .base import Availability, Backend, BackendError, Capabilities, UnsupportedOnBackend, node_outputs

__all__ = ["Reference"]


class Reference(Backend):
    """refquant.Session under a named profile."""

    def __init__(self, *, profile: str | refquant.Profile = "spec", name: str | None = None):
        super().__init__()
        self.profile = profile
        label = profile if isinstance(profile, str) else profile.name
        self.name = name or ("reference" if label == "spec" else f"reference-{label}")

    @property
    def version(self) -> str:
        return refquant.__version__

    def availability(self) -> Availability:
        try:
            refquant.get_profile(self.profile)
        except RefquantError:
            return Availability(False, f"refquant has no {self.profile!r} profile yet")
        return Availability(True)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            ir_version=None,
            opset=MAX_OPSET[DEFAULT_DOMAIN],
            domains=frozenset({MS_DOMAIN}),
            notes=(f"ai.onnx opsets {MIN_OPSET}..{MAX_OPSET[DEFAULT_DOMAIN]}; the ops listed by `refquant ops`",),
        )

    def _prepare(self, model: ModelProto, intermediates: bool):
        try:
            session = refquant.Session(model, profile=self.profile)
        except (UnsupportedOpError, OpsetError) as exc:
            raise UnsupportedOnBackend(self.name, str(exc)) from None
        except RefquantError as exc:
            raise BackendError(self.name, str(exc)) from None
        return session, node_outputs(session.model) if intermediates else None

    def _execute(self, prepared, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session, exposed = prepared
        try:
            if exposed is None:
                return dict(zip([o.name for o in session.outputs], session.run(None, feeds), strict=True))
            values = session.run_all(feeds)
        except RefquantError as exc:
            raise BackendError(self.name, str(exc)) from None
        return {name: values[name] for name in exposed if name in values}
