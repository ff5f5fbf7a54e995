"""The adapter kit: write one async handler per message type; the kit does the rest.

See :mod:`adapters.sdk.adapter` for the contract, :mod:`adapters.sdk.runner` for the
loop, :mod:`adapters.sdk.native_calls` for classifying agency failures and
:mod:`adapters.sdk.conformance` for the checks every adapter's tests run,
:mod:`adapters.sdk.sources` / :mod:`adapters.sdk.push` for pull and push, and
:mod:`adapters.sdk.xml_http` for agencies that speak XML over HTTP.
"""

from adapters.sdk.adapter import (
    Adapter,
    AgencyError,
    AgencyUnavailable,
    Answer,
    Handler,
    Processing,
    Reject,
    RequestContext,
)
from adapters.sdk.metrics import AdapterMetrics, NoMetrics, RecordingMetrics
from adapters.sdk.native_calls import agency_call
from adapters.sdk.policies import PollPolicy, RetryPolicy
from adapters.sdk.push import PushSource
from adapters.sdk.runner import AdapterRunner, Outcome, OutcomeKind
from adapters.sdk.sources import InboundRequest, PullSource, RequestSource
from adapters.sdk.xml_http import AgencyHttp, NativeReplies, XmlOverHttp

__all__ = [
    "Adapter",
    "AdapterMetrics",
    "AdapterRunner",
    "AgencyError",
    "AgencyHttp",
    "AgencyUnavailable",
    "Answer",
    "Handler",
    "InboundRequest",
    "NativeReplies",
    "NoMetrics",
    "Outcome",
    "OutcomeKind",
    "PollPolicy",
    "Processing",
    "PullSource",
    "PushSource",
    "RecordingMetrics",
    "Reject",
    "RequestContext",
    "RequestSource",
    "RetryPolicy",
    "XmlOverHttp",
    "agency_call",
]
