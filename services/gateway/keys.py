"""Typed application keys (aiohttp AppKey) for what the handlers need."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from vidflow.billing.v1 import billing_service_pb2_grpc
from vidflow.jobs.v1 import jobs_service_pb2_grpc
from vidflow.render.v1 import render_service_pb2_grpc

from services.gateway.batch_store import BatchStore
from services.gateway.config import ClientWebhookSettings, LiveSettings
from services.gateway.event_feed import EventFeed
from services.gateway.fanout import FanoutHub
from services.gateway.identity import IdentityStore
from services.gateway.jwt_tokens import JwtVerifier
from services.gateway.rate_limits import RequestLimiter
from services.gateway.webhook_store import WebhookStore

IDENTITY = web.AppKey("identity", IdentityStore)
JOBS_STUB = web.AppKey("jobs_stub", jobs_service_pb2_grpc.JobsServiceStub)
RENDER_STUB = web.AppKey("render_stub", render_service_pb2_grpc.RenderServiceStub)
BILLING_STUB = web.AppKey("billing_stub", billing_service_pb2_grpc.BillingServiceStub)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
# How long a download waits for media storage to connect and for each read (S3_*_TIMEOUT_SECONDS).
STORAGE_TIMEOUT = web.AppKey("storage_timeout", aiohttp.ClientTimeout)
# Deployment name -> Standard Webhooks secret (whsec_...) for provider webhook intake.
PROVIDER_WEBHOOK_SECRETS = web.AppKey("provider_webhook_secrets", dict)
RATE_LIMITER = web.AppKey("rate_limiter", RequestLimiter)
# Present only when JWT_* configure an identity provider.
JWT_VERIFIER = web.AppKey("jwt_verifier", JwtVerifier)
# Live status events: the in-process fan-out, the one NATS subscription feeding it, and settings.
LIVE_HUB = web.AppKey("live_hub", FanoutHub)
EVENT_FEED = web.AppKey("event_feed", EventFeed)
LIVE_SETTINGS = web.AppKey("live_settings", LiveSettings)
# Video batches, and client webhooks (endpoints, secrets, deliveries) with their settings.
BATCH_STORE = web.AppKey("batch_store", BatchStore)
WEBHOOK_STORE = web.AppKey("webhook_store", WebhookStore)
CLIENT_WEBHOOK_SETTINGS = web.AppKey("client_webhook_settings", ClientWebhookSettings)
