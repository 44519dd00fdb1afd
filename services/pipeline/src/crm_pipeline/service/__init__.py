"""Pipeline's use cases: the one layer that api/, grpc/ and consumers/ call. One unit of work
(one transaction, outbox rows included) per use case."""

from crm_pipeline.service.activity import ACTIVITY_CONSUMER, MERGES_CONSUMER, PipelineService

__all__ = ["ACTIVITY_CONSUMER", "MERGES_CONSUMER", "PipelineService"]
