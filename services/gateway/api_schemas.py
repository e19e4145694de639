"""JSON Schemas (2020-12) of what the gateway's routes take and return, for the OpenAPI document.

OpenAI's names and fields come from its published spec (`VideoResource`, `VideoListResource`,
`DeletedVideoResource`); properties that OpenAI's API does not have carry
`x-vidflow-extension: true`. Response schemas leave additional properties open, as OpenAI's do,
so a field added later is not a breaking change.
"""

from __future__ import annotations

from typing import Any

from services.gateway.api_docs import Parameter, ResponseHeader, Schema, header, query

EXTENSION = {"x-vidflow-extension": True}
UNIX_SECONDS = {"type": "integer", "format": "unixtime"}
MODELS = ["sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-2025-12-08", "sora-2-pro-2025-10-06"]
CLIP_SECONDS = ["4", "8", "12", "16", "20"]
# Longer than one clip: a long video, made of clips stitched together (a Vidflow extension).
VIDEO_SECONDS = [str(seconds) for seconds in range(4, 121, 4)]


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


VIDEO_STATUS = Schema(
    "VideoStatus", {"type": "string", "enum": ["queued", "in_progress", "completed", "failed"]}
)
VIDEO_SIZE = Schema(
    "VideoSize",
    {
        "type": "string",
        "enum": ["720x1280", "1280x720", "1024x1792", "1792x1024", "1080x1920", "1920x1080"],
        "description": "Width x height. sora-2 makes 720x1280 and 1280x720; sora-2-pro also the "
        "others (1080x1920 and 1920x1080 are beyond OpenAI's list).",
    },
)
VIDEO_MODEL = Schema(
    "VideoModel",
    {"type": "string", "enum": MODELS, "description": "Dated snapshots act as their base model."},
)
VIDEO_ERROR = Schema(
    "VideoError",
    {
        "type": "object",
        "description": "Why generation failed (`cancelled` when the owner cancelled it).",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    },
)
VIDEO_SEGMENT = Schema(
    "VideoSegment",
    {
        "type": "object",
        "description": "One clip of a long video.",
        "required": ["index", "prompt", "seconds", "status", "progress", "retry_count", "error"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "prompt": {"type": "string"},
            "seconds": {"type": "string", "pattern": "^[0-9]+$", "examples": ["8"]},
            "status": {"type": "string", "enum": ["pending", "in_progress", "completed", "failed"]},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "retry_count": {"type": "integer", "minimum": 0},
            "error": VIDEO_ERROR.nullable(),
        },
    },
)
VIDEO = Schema(
    "VideoResource",
    {
        "type": "object",
        "title": "Video job",
        "description": "OpenAI's video object, plus the Vidflow extensions marked `x-vidflow-extension`.",
        "required": [
            "id",
            "object",
            "model",
            "status",
            "progress",
            "created_at",
            "completed_at",
            "expires_at",
            "prompt",
            "size",
            "seconds",
            "remixed_from_video_id",
            "error",
        ],
        "properties": {
            "id": {"type": "string", "examples": ["video_123"]},
            "object": {"const": "video"},
            "model": {"type": "string", "examples": ["sora-2"]},
            "status": VIDEO_STATUS,
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "created_at": UNIX_SECONDS,
            "completed_at": _nullable(UNIX_SECONDS),
            "expires_at": {
                **_nullable(UNIX_SECONDS),
                "description": "Always null: Vidflow's copy of the media does not expire.",
            },
            "prompt": {"type": ["string", "null"]},
            "size": {"type": "string", "examples": ["720x1280"]},
            "seconds": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "examples": ["8"],
                "description": "Length in seconds.",
            },
            "remixed_from_video_id": {"type": ["string", "null"]},
            "error": VIDEO_ERROR.nullable(),
            "queue_position": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "1 = next to start among videos of its model waiting for a provider "
                "slot; null once started.",
                **EXTENSION,
            },
            "reference_images": {
                "type": "integer",
                "minimum": 0,
                "description": "How many reference images the video was made from.",
                **EXTENSION,
            },
            "segments": {
                "anyOf": [{"type": "array", "items": VIDEO_SEGMENT}, {"type": "null"}],
                "description": "A long video's clips, in order; null for a single clip.",
                **EXTENSION,
            },
            "retry_count": {
                "type": "integer",
                "minimum": 0,
                "description": "How many times the video was retried.",
                **EXTENSION,
            },
            "last_retried_at": {**_nullable(UNIX_SECONDS), **EXTENSION},
        },
    },
)
VIDEO_LIST = Schema(
    "VideoListResource",
    {
        "type": "object",
        "required": ["object", "data", "first_id", "last_id", "has_more"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": VIDEO},
            "first_id": {"type": ["string", "null"]},
            "last_id": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
    },
)
DELETED_VIDEO = Schema(
    "DeletedVideoResource",
    {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "video.deleted"},
            "deleted": {"const": True},
        },
    },
)

_REFERENCE_OBJECT = Schema(
    "ImageReference",
    {
        "type": "object",
        "description": "A reference image as a base64 data URL (`file_id` and http(s) URLs are refused).",
        "required": ["image_url"],
        "properties": {
            "image_url": {
                "anyOf": [
                    {
                        "type": "string",
                        "pattern": "^data:",
                        "examples": ["data:image/png;base64,iVBORw0KGgo="],
                    },
                    {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
                ]
            }
        },
    },
)
_SECONDS_TEXT = (
    "4, 8, 12, 16 or 20 (16 and 20 beyond OpenAI's list); a longer multiple of 4, up to 120, makes a "
    "long video of several clips (a Vidflow extension)."
)
_SEGMENT_REQUEST = Schema(
    "VideoSegmentRequest",
    {
        "type": "object",
        "required": ["prompt"],
        "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 32_000},
            "seconds": {"type": "string", "enum": CLIP_SECONDS, "default": "4"},
        },
    },
)
_CREATE_FIELDS: dict[str, Any] = {
    "model": {**VIDEO_MODEL.body, "default": "sora-2"},
    "prompt": {"type": "string", "minLength": 1, "maxLength": 32_000},
    "size": {"allOf": [VIDEO_SIZE], "default": "720x1280"},
    "reference_fit": {
        "type": "string",
        "enum": ["crop", "pad"],
        "default": "crop",
        "description": "How reference images are fitted to the video's size.",
        **EXTENSION,
    },
    "webhook_url": {
        "type": "string",
        "pattern": "^https?://",
        "maxLength": 2048,
        "description": "Where to POST this video's `video.completed` or `video.failed` event, signed with "
        "the caller's webhook secret (`POST /v1/webhook_secret` first, else 400).",
        **EXTENSION,
    },
}
CREATE_VIDEO_JSON = Schema(
    "CreateVideoJsonBody",
    {
        "type": "object",
        "title": "Create video request (JSON)",
        "required": ["prompt"],
        "properties": {
            **_CREATE_FIELDS,
            "seconds": {
                "anyOf": [
                    {"type": "string", "enum": VIDEO_SECONDS},
                    {"type": "integer", "enum": [int(seconds) for seconds in VIDEO_SECONDS]},
                ],
                "default": "4",
                "description": _SECONDS_TEXT,
            },
            "segments": {
                "type": "array",
                "maxItems": 12,
                "items": _SEGMENT_REQUEST,
                "description": "A long video's clips, in order; without it, a long video's clips are "
                "planned from `prompt`.",
                **EXTENSION,
            },
            "input_reference": _REFERENCE_OBJECT,
            "input_references": {
                "type": "array",
                "items": _REFERENCE_OBJECT,
                "maxItems": 4,
                "description": "More reference images (at most four in all), each moderated; the "
                "provider gets the first.",
                **EXTENSION,
            },
        },
    },
)
REMIX_VIDEO = Schema(
    "RemixVideoBody",
    {
        "type": "object",
        "title": "Remix video request",
        "required": ["prompt"],
        "properties": {
            "prompt": {
                "type": "string",
                "minLength": 1,
                "maxLength": 32000,
                "description": "Updated text prompt that directs the remix generation.",
            },
            "webhook_url": _CREATE_FIELDS["webhook_url"],
        },
        "additionalProperties": False,
    },
)
CREATE_VIDEO_MULTIPART = Schema(
    "CreateVideoMultipartBody",
    {
        "type": "object",
        "title": "Create video request (multipart)",
        "required": ["prompt"],
        "properties": {
            **_CREATE_FIELDS,
            "seconds": {
                "type": "string",
                "enum": VIDEO_SECONDS,
                "default": "4",
                "description": _SECONDS_TEXT,
            },
            "segments": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": "`segments` as in the JSON body, as JSON text.",
                **EXTENSION,
            },
            "input_reference": {
                "type": "string",
                "format": "binary",
                "contentMediaType": "application/octet-stream",
                "description": "A JPEG, PNG or WebP image of at most 10 MB. Repeat the field for up "
                "to four (a Vidflow extension).",
            },
        },
    },
)

RENDITION = Schema(
    "Rendition",
    {
        "type": "object",
        "required": [
            "object",
            "name",
            "width",
            "height",
            "bit_rate",
            "has_audio",
            "content_type",
            "size_bytes",
            "url",
            "expires_at",
        ],
        "properties": {
            "object": {"const": "video.rendition"},
            "name": {"type": "string", "examples": ["720p"]},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "bit_rate": {"type": "integer"},
            "has_audio": {"type": "boolean"},
            "content_type": {"type": "string"},
            "size_bytes": {"type": "integer"},
            "url": {"type": "string", "description": "A presigned download URL."},
            "expires_at": {**UNIX_SECONDS, "description": "When `url` stops working."},
        },
    },
)
RENDITION_LIST = Schema(
    "RenditionList",
    {
        "type": "object",
        "required": ["object", "video_id", "data", "hls_master_url"],
        "properties": {
            "object": {"const": "list"},
            "video_id": {"type": "string"},
            "data": {"type": "array", "items": RENDITION},
            "hls_master_url": {"type": ["string", "null"]},
        },
    },
)

BALANCE = Schema(
    "Balance",
    {
        "type": "object",
        "required": ["object", "account_id", "available", "held", "currency"],
        "properties": {
            "object": {"const": "billing.balance"},
            "account_id": {"type": "string"},
            "available": {"type": "integer", "description": "Credits that can be spent."},
            "held": {"type": "integer", "description": "Credits held for videos in flight."},
            "currency": {"const": "credits"},
        },
    },
)
LEDGER_ENTRY = Schema(
    "LedgerEntry",
    {
        "type": "object",
        "required": ["id", "object", "type", "available_delta", "held_delta", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "billing.ledger_entry"},
            "type": {"type": "string", "enum": ["credit", "hold", "charge", "release", "other"]},
            "available_delta": {"type": "integer"},
            "held_delta": {"type": "integer"},
            "video_id": {"type": ["string", "null"]},
            "reason": {"type": ["string", "null"]},
            "initiated_by": {"type": ["string", "null"]},
            "created_at": UNIX_SECONDS,
        },
    },
)
LEDGER = Schema(
    "LedgerPage",
    {
        "type": "object",
        "description": "Newest first. Pass `next_after` as `after` for the next page.",
        "required": ["object", "data", "has_more", "next_after"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": LEDGER_ENTRY},
            "has_more": {"type": "boolean"},
            "next_after": {"type": ["string", "null"]},
        },
    },
)
QUOTE = Schema(
    "Quote",
    {
        "type": "object",
        "required": ["object", "model", "seconds", "size", "amount", "currency", "available", "sufficient"],
        "properties": {
            "object": {"const": "billing.quote"},
            "model": {"type": "string"},
            "seconds": {"type": "string"},
            "size": {"type": "string"},
            "amount": {"type": "integer", "description": "The price in credits."},
            "currency": {"const": "credits"},
            "available": {"type": "integer"},
            "sufficient": {"type": "boolean"},
            "segments": {
                "anyOf": [{"type": "array", "items": VIDEO_SEGMENT}, {"type": "null"}],
                "description": "A long video's planned clips; null for a single clip.",
                **EXTENSION,
            },
        },
    },
)
ADMIN_ACCOUNT = Schema(
    "AdminAccountView",
    {"allOf": [BALANCE], "type": "object", "required": ["ledger"], "properties": {"ledger": LEDGER}},
)
CREDIT_REQUEST = Schema(
    "CreditRequest",
    {
        "type": "object",
        "required": ["amount", "reason"],
        "properties": {
            "amount": {"type": "integer", "minimum": 1, "maximum": 10**12},
            "reason": {"type": "string", "minLength": 1, "maxLength": 500},
        },
    },
)
ORGANISATION_REQUEST = Schema(
    "OrganisationRequest",
    {
        "type": "object",
        "properties": {
            "organisation_id": {
                "type": ["string", "null"],
                "maxLength": 64,
                "description": "The organisation's account id; null or empty takes the user out.",
            }
        },
    },
)
ACCOUNT = Schema(
    "Account",
    {
        "type": "object",
        "required": ["object", "id", "organisation_id"],
        "properties": {
            "object": {"const": "billing.account"},
            "id": {"type": "string"},
            "organisation_id": {"type": ["string", "null"]},
        },
    },
)
_LIMIT = {"type": "integer", "minimum": 0, "maximum": 10**12, "default": 0}
BUDGET_REQUEST = Schema(
    "BudgetRequest",
    {
        "type": "object",
        "description": "Credits; 0 means no limit.",
        "properties": {"daily_limit": _LIMIT, "monthly_limit": _LIMIT},
    },
)
BUDGET = Schema(
    "Budget",
    {
        "type": "object",
        "required": ["object", "api_key_id", "daily_limit", "monthly_limit"],
        "properties": {
            "object": {"const": "billing.budget"},
            "api_key_id": {"type": "string"},
            "daily_limit": {"type": "integer"},
            "monthly_limit": {"type": "integer"},
        },
    },
)

PROVIDER_EVENT = Schema(
    "ProviderWebhookEvent",
    {
        "type": "object",
        "description": "OpenAI's webhook event shape, signed per Standard Webhooks.",
        "required": ["type", "data"],
        "properties": {
            "type": {"type": "string", "examples": ["video.completed"]},
            "data": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
        },
    },
)
PROVIDER_EVENT_RECEIPT = Schema(
    "ProviderWebhookReceipt",
    {
        "type": "object",
        "required": ["received", "outcome"],
        "properties": {
            "received": {"const": True},
            "outcome": {"type": "string", "enum": ["applied", "duplicate", "ignored"]},
        },
    },
)

# --- parameters and headers shared by several routes ----------------------------------------------

LIMIT_1_100 = query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size.")
AFTER = query("after", {"type": "string"}, "The cursor from the previous page.")
IDEMPOTENCY_KEY = header(
    "Idempotency-Key",
    {"type": "string", "maxLength": 128},
    "Repeating a request with the same key answers with the same video instead of making another.",
)
POLL_AFTER = ResponseHeader(
    "openai-poll-after-ms",
    {"type": "integer", "minimum": 0},
    "Sent while the video is queued or in progress: poll again after this many milliseconds.",
)
WEBHOOK_HEADERS: tuple[Parameter, ...] = tuple(
    header(name, {"type": "string"}, text, required=True)
    for name, text in (
        ("webhook-id", "The event's unique id; repeats are acknowledged as duplicates."),
        ("webhook-timestamp", "Unix seconds; more than 5 minutes off is refused."),
        ("webhook-signature", "`v1,<base64 HMAC-SHA256>` with the deployment's `whsec_` secret."),
    )
)
