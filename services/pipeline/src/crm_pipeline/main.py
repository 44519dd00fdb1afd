"""The pipeline process: HTTP API, gRPC server and consumers in one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from crm.common.v1 import personal_data_pb2_grpc
from crm.pipeline.v1 import pipeline_pb2_grpc
from crm_pipeline.api.activities import router as activities_router
from crm_pipeline.api.deals import router as deals_router
from crm_pipeline.api.errors import install_errors
from crm_pipeline.api.forecast import router as forecast_router
from crm_pipeline.api.pipelines import router as pipelines_router
from crm_pipeline.api.routes import router
from crm_pipeline.api.scoring import router as scoring_router
from crm_pipeline.consumers.contacts import contacts_handlers
from crm_pipeline.consumers.interactions import interactions_handlers
from crm_pipeline.consumers.scoring import with_scoring
from crm_pipeline.grpc.servicer import PipelineServicer
from crm_pipeline.service import PipelineService
from crm_pipeline.service.activities import Activities
from crm_pipeline.service.deals import Deals
from crm_pipeline.service.forecast import Forecasts
from crm_pipeline.service.pipelines import Pipelines
from crm_pipeline.service.privacy import Erasure, exports
from crm_pipeline.service.rotting import RottingWatch
from crm_pipeline.service.scoring import LeadScoring
from crm_pipeline.service.snapshots import Snapshots
from crm_pipeline.settings import Settings
from crmkit import Runtime, create_service_app
from crmkit.contacts import ContactsClient
from crmkit.erasure import ErasureConfirmations
from crmkit.grpc import GrpcAuth
from crmkit.personal_data import PersonalDataServicer
from crmkit.topics import CONTACTS, INTERACTIONS

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings) as runtime:
            db = await runtime.postgres(MIGRATIONS)
            forecasts = Forecasts(db, settings.forecast_time_zone)
            snapshots = Snapshots(forecasts, settings.forecast_snapshot_every,
                                  settings.forecast_snapshot_check_seconds)
            runtime.background(snapshots.run(), "forecast snapshots")
            service = PipelineService(db)
            channel = await runtime.grpc_channel(settings.contacts_grpc_target, [ContactsClient.SERVICE])
            contacts = ContactsClient(channel, runtime.credentials)
            await runtime.outbox_relay(db)
            lead_scoring = LeadScoring(
                db, min_change=settings.lead_score_min_change,
                rescore_every=timedelta(seconds=settings.lead_rescore_every_seconds),
                keep_events=timedelta(days=settings.lead_event_retention_days),
                idle_seconds=settings.lead_rescore_check_seconds)
            runtime.background(lead_scoring.run(), "lead re-scoring")
            activities = Activities(db, contacts)
            runtime.background(RottingWatch(db, settings.rotting_check_seconds).run(), "rotting deals")
            confirmations = ErasureConfirmations(
                db, partial(contacts.confirm_erasure, service=settings.service_name))
            runtime.background(confirmations.run(), "erasure confirmations")
            erasure = Erasure(db, confirmations, erasers=[lead_scoring.erase])
            auth = GrpcAuth(runtime.authenticator)
            servicer = PipelineServicer(service, auth)
            exporter = PersonalDataServicer(settings.service_name,
                                            exports(service.personal_data, activities.personal_data,
                                                    lead_scoring.personal_data), auth)
            await runtime.serve_grpc({
                "crm.pipeline.v1.PipelineService":
                    partial(pipeline_pb2_grpc.add_PipelineServiceServicer_to_server, servicer),
                "crm.common.v1.PersonalDataService":
                    partial(personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server, exporter),
            })
            await runtime.consumer(with_scoring({INTERACTIONS: interactions_handlers(service, activities),
                                                 CONTACTS: contacts_handlers(service, activities, erasure)},
                                                lead_scoring))
            app.state.service = service
            app.state.pipelines = Pipelines(db)
            app.state.deals = Deals(db, contacts)
            app.state.activities = activities
            app.state.forecasts = forecasts
            app.state.snapshots = snapshots
            app.state.lead_scoring = lead_scoring
            app.state.runtime = runtime
            yield

    app = create_service_app(settings, lifespan,
                             [router, pipelines_router, deals_router, activities_router, forecast_router,
                              scoring_router],
                             title="CRM pipeline", description="Pipelines, deals, activities and forecasts.")
    install_errors(app)
    return app
