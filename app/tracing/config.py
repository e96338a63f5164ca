"""Whether simscore exports traces, and how: decided from the standard OpenTelemetry variables
only (no ``SIMSCORE_*`` setting), before any of the SDK is imported.

* Off when ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``.
* On when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
  (not empty), exporting over OTLP; or when ``OTEL_TRACES_EXPORTER`` names an exporter
  (``otlp``: the specification's default endpoint, http://localhost:4318; ``console``: spans as
  JSON on stdout, for development). Off otherwise: nothing is exported, no thread is started.
* ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf``
  (the default) or ``grpc`` (where ``opentelemetry-exporter-otlp-proto-grpc`` is installed).

Everything else (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_*`` headers, timeout,
compression and certificates) is read by the SDK itself, as it defines them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

EXPORTERS = ("otlp", "console")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_PROTOCOL = "http/protobuf"
DEFAULT_ENDPOINT = "http://localhost:4318"  # the specification's default for http/protobuf


class TracingConfigError(ValueError):
    """The OpenTelemetry variables ask for something simscore cannot export with."""


@dataclass(frozen=True)
class TraceExport:
    """Where spans go: the exporters named, the OTLP protocol and endpoint (for the log)."""

    exporters: tuple[str, ...]
    protocol: str = DEFAULT_PROTOCOL
    endpoint: str = DEFAULT_ENDPOINT

    def describe(self) -> str:
        """One phrase for the start-up log line."""
        parts = []
        for name in self.exporters:
            if name == "otlp":
                parts.append(f"OTLP {self.protocol} to {self.endpoint}")
            else:
                parts.append("the console (stdout)")
        return " and ".join(parts)


def trace_export(env: Mapping[str, str]) -> TraceExport | None:
    """What the variables in ``env`` ask for (module docstring); None: tracing is off.
    Raises ``TracingConfigError`` for an exporter or protocol simscore does not have."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [n for n in named if n]
    if "none" in named:
        return None
    endpoint = _first(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if not named:
        if endpoint is None:
            return None
        named = ["otlp"]
    unknown = [n for n in named if n not in EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={','.join(named)}: simscore exports traces with "
            f"{' or '.join(EXPORTERS)} (or none); {', '.join(unknown)} is not available"
        )
    protocol = _first(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (protocol or DEFAULT_PROTOCOL).lower()
    if "otlp" in named and protocol not in OTLP_PROTOCOLS:
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: the Python OTLP exporter speaks "
            f"{' or '.join(OTLP_PROTOCOLS)}"
        )
    if endpoint is None:
        endpoint = DEFAULT_ENDPOINT if protocol == DEFAULT_PROTOCOL else "http://localhost:4317"
    return TraceExport(tuple(dict.fromkeys(named)), protocol, endpoint)


def _first(env: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` set to something other than blanks."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None
