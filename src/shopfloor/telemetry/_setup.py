"""Tracing and metrics set up from ``settings.telemetry``: providers, processors, exporters.

``build_telemetry(settings)`` makes a ``Telemetry`` (the composition root holds one per process);
spans reach the one active in the current context (``Telemetry.activate()``, a context variable
in ``_context.py``: no module state). ``configure_telemetry`` builds one and activates it in the
caller's context, for scripts and tests.

The local trace store is always on; OTLP over HTTP and gRPC are added when an
endpoint is configured; more come from the registry passed in. Every exporter sits
behind its own ``BatchSpanProcessor``, so a run only appends finished spans to
in-memory queues and a slow collector never slows the local store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Tracer

from shopfloor._registry import Registry
from shopfloor.config import Settings, TelemetrySettings
from shopfloor.errors import ConfigError, TelemetryError
from shopfloor.storage import Engines
from shopfloor.telemetry._context import ACTIVE, RUN
from shopfloor.telemetry._conventions import RUN_ID
from shopfloor.telemetry._lean import LeanTracer
from shopfloor.telemetry._live import LiveMetrics
from shopfloor.telemetry._logs import configure_json_logs
from shopfloor.telemetry._outbound import Outbound
from shopfloor.telemetry._store import LocalStoreExporter, TraceStore

__all__ = [
    "ExporterFactory",
    "Exporters",
    "Telemetry",
    "build_telemetry",
    "configure_telemetry",
    "current_telemetry",
    "exporter_names",
    "shutdown_telemetry",
    "telemetry_exporters",
    "trace_store_url",
]


@dataclass(frozen=True, kw_only=True)
class Exporters:
    """What one configured destination receives: spans, metrics, or both."""

    spans: SpanExporter | None = None
    metrics: MetricExporter | None = None


#: Returns the destination's exporters, or None where the settings do not enable it.
ExporterFactory = Callable[[TelemetrySettings], Exporters | None]


def telemetry_exporters() -> Registry[ExporterFactory]:
    """The built-in destinations: ``otlp-http`` and ``otlp-grpc``, each on where its endpoint is set."""
    return Registry("telemetry exporter", {"otlp-http": _otlp_http, "otlp-grpc": _otlp_grpc})


def exporter_names() -> list[str]:
    return sorted(telemetry_exporters().names())


def _otlp_http(settings: TelemetrySettings) -> Exporters | None:
    if not settings.otlp_http_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = settings.otlp_http_endpoint.rstrip("/").removesuffix("/v1/traces")
    return Exporters(
        spans=OTLPSpanExporter(endpoint=f"{base}/v1/traces"),
        metrics=OTLPMetricExporter(endpoint=f"{base}/v1/metrics") if settings.otlp_metrics else None,
    )


def _otlp_grpc(settings: TelemetrySettings) -> Exporters | None:
    if not settings.otlp_grpc_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = settings.otlp_grpc_endpoint
    insecure = endpoint.startswith("http://")
    return Exporters(
        spans=OTLPSpanExporter(endpoint=endpoint, insecure=insecure),
        metrics=OTLPMetricExporter(endpoint=endpoint, insecure=insecure) if settings.otlp_metrics else None,
    )


class _RunStamp(SpanProcessor):
    """Stamps the current run's id on every span opened in it, ours or another library's."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        run_id = RUN.get()
        if run_id is not None and span.attributes is not None and RUN_ID not in span.attributes:
            span.set_attribute(RUN_ID, run_id)


class Telemetry:
    """One process's tracing and metrics: the tracer, the local store, the live metrics."""

    def __init__(
        self,
        *,
        store: TraceStore,
        exporters: Sequence[Exporters] = (),
        record_content: bool = False,
        store_content: bool = True,
        service_name: str = "shopfloor",
        metric_readers: Sequence[MetricReader] = (),
        live_metrics: bool = False,
    ) -> None:
        self.store = store
        #: full content (messages, tool arguments and results) on spans, sent to every exporter
        self.record_content = record_content
        #: step outputs, task and answer on spans (what replay needs); kept in the local store
        self.store_content = store_content or record_content
        resource = Resource.create({"service.name": service_name})
        readers = [*metric_readers]
        readers += [PeriodicExportingMetricReader(e.metrics) for e in exporters if e.metrics is not None]
        # The instruments cost ~30 us a span in the export thread: only where something reads them.
        self.metrics = LiveMetrics(resource=resource, readers=readers) if live_metrics or readers else None
        # Every span is kept (the local store is the record of a run): no parent-based sampling to consult.
        self.provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
        self.provider.add_span_processor(_RunStamp())
        #: what ends every span: the SDK's (other libraries') and the lean ones (ours, ``_lean.py``)
        self.processors: list[SpanProcessor] = []
        # Big queue, short delay: a burst of spans waits in memory rather than being dropped.
        # Every destination gets spans redacted (``_outbound.py``); those leaving the machine
        # lose message and tool content too unless ``record_content`` is on.
        local = Outbound(LocalStoreExporter(store, on_records=self.metrics.record if self.metrics else None))
        self.add_span_processor(
            BatchSpanProcessor(
                local, max_queue_size=65536, schedule_delay_millis=500, max_export_batch_size=4096
            )
        )
        for exporter in exporters:
            if exporter.spans is not None:
                spans = Outbound(exporter.spans, strip_content=not record_content)
                self.add_span_processor(BatchSpanProcessor(spans))
        self.tracer: Tracer = self.provider.get_tracer("shopfloor")
        self.lean = LeanTracer(resource=resource, processors=self.processors)

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """A processor that every span reaches at its end (and SDK spans at their start)."""
        self.provider.add_span_processor(processor)
        self.processors.append(processor)

    @property
    def meter_provider(self) -> MeterProvider | None:
        return self.metrics.provider if self.metrics is not None else None

    def prometheus_text(self) -> str:
        """This process's live metrics in the Prometheus text format (``live_metrics=True``)."""
        if self.metrics is None:
            raise TelemetryError("live metrics are off: configure_telemetry(settings, live_metrics=True)")
        self.force_flush()
        return self.metrics.prometheus_text()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop every exporter; spans opened afterwards are not recorded."""
        self.provider.shutdown()
        if self.metrics is not None:
            self.metrics.shutdown()
        if ACTIVE.get() is self:
            ACTIVE.set(None)

    @contextmanager
    def activate(self) -> Iterator[Telemetry]:
        """Spans opened in this block (and in tasks and threads it starts) go to this telemetry."""
        token = ACTIVE.set(self)
        try:
            yield self
        finally:
            ACTIVE.reset(token)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.shutdown()


def current_telemetry() -> Telemetry | None:
    """The telemetry active in this context, or None (then spans are no-ops)."""
    return ACTIVE.get()


def trace_store_url(settings: Settings) -> str:
    """``telemetry.store_url``, else a PostgreSQL ``database_url``, else ``traces.db`` in the home."""
    if settings.telemetry.store_url:
        return settings.telemetry.store_url
    if settings.database_url and not settings.database_url.startswith("sqlite"):
        return settings.database_url
    return f"sqlite:///{settings.ensure_home() / 'traces.db'}"


def build_telemetry(
    settings: Settings,
    *,
    extra_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    record_content: bool | None = None,
    store_content: bool | None = None,
    live_metrics: bool = False,
    destinations: Registry[ExporterFactory] | None = None,
    engines: Engines | None = None,
) -> Telemetry:
    """Make telemetry from ``settings.telemetry``, not yet active anywhere (``activate()``).

    ``live_metrics`` keeps OpenTelemetry instruments fed from the spans in this process (for
    ``prometheus_text()``); they are on anyway where an OTLP metrics exporter is configured.
    ``destinations`` are the exporter factories to consult (``telemetry_exporters()`` by default);
    ``engines`` the process's shared engines, where the trace store's database is opened.
    """
    conf = settings.telemetry
    destinations = destinations if destinations is not None else telemetry_exporters()
    exporters: list[Exporters] = []
    for name in destinations:
        try:
            made = destinations.get(name)(conf)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"telemetry exporter {name!r}: {exc}") from exc
        if made is not None:
            exporters.append(made)
    exporters += [Exporters(spans=exporter) for exporter in extra_exporters]
    telemetry = Telemetry(
        store=TraceStore(trace_store_url(settings), engines=engines),
        exporters=exporters,
        record_content=conf.record_content if record_content is None else record_content,
        store_content=conf.store_content if store_content is None else store_content,
        metric_readers=metric_readers,
        live_metrics=live_metrics,
    )
    if conf.json_logs:
        configure_json_logs()
    return telemetry


def configure_telemetry(settings: Settings, **options: Any) -> Telemetry:
    """``build_telemetry(settings, **options)`` and activate the result in the caller's context
    (shutting down the one active there before); ``shutdown()`` (or ``with``) deactivates it again."""
    telemetry = build_telemetry(settings, **options)
    previous = ACTIVE.get()
    if previous is not None:
        previous.shutdown()
    ACTIVE.set(telemetry)
    return telemetry


def shutdown_telemetry() -> None:
    """Flush every exporter of the telemetry active in this context and deactivate it."""
    active = ACTIVE.get()
    if active is not None:
        active.shutdown()
