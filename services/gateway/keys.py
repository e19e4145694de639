"""Typed application keys (aiohttp AppKey) for what the handlers need."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from vidflow.billing.v1 import billing_service_pb2_grpc
from vidflow.jobs.v1 import jobs_service_pb2_grpc
from vidflow.render.v1 import render_service_pb2_grpc

from services.gateway.identity import IdentityStore

IDENTITY = web.AppKey("identity", IdentityStore)
JOBS_STUB = web.AppKey("jobs_stub", jobs_service_pb2_grpc.JobsServiceStub)
RENDER_STUB = web.AppKey("render_stub", render_service_pb2_grpc.RenderServiceStub)
BILLING_STUB = web.AppKey("billing_stub", billing_service_pb2_grpc.BillingServiceStub)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
# Deployment name -> Standard Webhooks secret (whsec_...) for provider webhook intake.
PROVIDER_WEBHOOK_SECRETS = web.AppKey("provider_webhook_secrets", dict)
