"""Kubernetes resources of a task pod: requests (== limits by default), image, placement, service account."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from airflow_provider_dataeng.specs import SharedModel

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)
_SUFFIX = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
RESOURCE_KEYS = ("cpu", "memory", "ephemeral_storage")
K8S_RESOURCE_NAMES = {"cpu": "cpu", "memory": "memory", "ephemeral_storage": "ephemeral-storage"}
DEFAULT_CPU = "500m"
DEFAULT_MEMORY = "512Mi"

Quantity = Annotated[
    str,
    StringConstraints(pattern=QUANTITY_PATTERN),
    Field(description="A Kubernetes quantity: '500m', '1', '512Mi', '2Gi'"),
]


@lru_cache(maxsize=1024)
def parse_quantity(text: str | int | float) -> Decimal:
    """A Kubernetes quantity string as a Decimal (``"500m"`` -> 0.5, ``"1Gi"`` -> 1073741824)."""
    match = _QUANTITY.match(str(text))
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    suffix = match.group(2) or ""
    number = str(text)[: len(str(text)) - len(suffix)] if suffix else str(text)
    return Decimal(number) * _SUFFIX[suffix]


def _quantity_text(value: Any) -> Any:
    # YAML gives `cpu: 1` as an int; Kubernetes quantities are strings.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class ResourceLimits(SharedModel):
    """Explicit limits; only allowed to differ from the requests with ``allow_burstable: true``."""

    cpu: Quantity | None = Field(default=None, description="CPU limit ('500m', '1')")
    memory: Quantity | None = Field(default=None, description="Memory limit ('512Mi', '2Gi')")
    ephemeral_storage: Quantity | None = Field(default=None, description="Local disk limit ('1Gi')")

    @field_validator("cpu", "memory", "ephemeral_storage", mode="before")
    @classmethod
    def _coerce_number(cls, value: Any) -> Any:
        return _quantity_text(value)


class Toleration(SharedModel):
    """A pod toleration (Kubernetes ``V1Toleration``)."""

    key: str | None = Field(default=None, description="Taint key to tolerate (empty with Exists: every taint)")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Equal: key and value match")
    value: str | None = Field(default=None, description="Taint value (with operator Equal)")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate (empty: every effect)")
    toleration_seconds: int | None = Field(default=None, ge=0, description="With NoExecute: how long the pod stays")


class Resources(SharedModel):
    """Resources of the task pod's ``base`` container, plus pod placement.

    ``cpu``/``memory``/``ephemeral_storage`` are the requests; the limits equal them (Guaranteed QoS)
    unless ``limits`` is given together with ``allow_burstable: true``.
    """

    cpu: Quantity | None = Field(default=None, description=f"CPU request (= limit); default {DEFAULT_CPU}")
    memory: Quantity | None = Field(default=None, description=f"Memory request (= limit); default {DEFAULT_MEMORY}")
    ephemeral_storage: Quantity | None = Field(default=None, description="Ephemeral storage request (= limit)")
    limits: ResourceLimits | None = Field(
        default=None, description="Limits that differ from the requests; needs allow_burstable: true"
    )
    allow_burstable: bool | None = Field(
        default=None,
        description=(
            "Opt out of Guaranteed QoS (limits == requests). Autoscaling on relative usage is measured "
            "against requests, so pods that burst over their requests distort it; only for tasks that need it"
        ),
    )
    image: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None, description="Container image of the task pod (default: the executor's worker image)"
    )
    node_selector: dict[str, str] | None = Field(default=None, description="Node labels the pod must run on")
    tolerations: list[Toleration] | None = Field(default=None, description="Taints the pod tolerates")
    service_account: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")] | None = Field(
        default=None, description="Kubernetes service account of the task pod")

    @field_validator("cpu", "memory", "ephemeral_storage", mode="before")
    @classmethod
    def _coerce_number(cls, value: Any) -> Any:
        return _quantity_text(value)

    def requests(self) -> dict[str, str]:
        """Requests by config key (defaults for cpu and memory filled in)."""
        out = {"cpu": self.cpu or DEFAULT_CPU, "memory": self.memory or DEFAULT_MEMORY}
        if self.ephemeral_storage:
            out["ephemeral_storage"] = self.ephemeral_storage
        return out

    def effective_limits(self) -> dict[str, str]:
        """Limits by config key: the requests, overridden by explicit ``limits``."""
        out = self.requests()
        if self.limits is not None:
            for key in RESOURCE_KEYS:
                value = getattr(self.limits, key)
                if value is not None:
                    out[key] = value
        return out

    def qos_problems(self) -> list[tuple[str, str, str]]:
        """``(key, request, limit)`` for each resource whose limit differs from its request."""
        requests, limits = self.requests(), self.effective_limits()
        out = []
        for key in RESOURCE_KEYS:
            req, lim = requests.get(key), limits.get(key)
            if lim is None:
                continue
            if req is None or parse_quantity(req) != parse_quantity(lim):
                out.append((key, req or "none", lim))
        return out

    def below_requests(self) -> list[tuple[str, str, str]]:
        """Limits lower than their requests (never valid in Kubernetes)."""
        requests, limits = self.requests(), self.effective_limits()
        return [
            (k, requests[k], limits[k])
            for k in RESOURCE_KEYS
            if k in requests and k in limits and parse_quantity(limits[k]) < parse_quantity(requests[k])
        ]
