"""Python client of the AIFX Reversal Engine REST API (sync and asyncio, on httpx).

from aifx_client import AIFXClient
with AIFXClient() as client:  # ML_API_URL (default http://localhost:3000), ML_API_ENABLED
    p = client.predict("EUR/USD", "1h", data=candles, user_id="user123")
    print(p.signal, p.confidence, p.source)  # source is "legacy" if /predict answered
"""

from aifx_client.aio import AsyncAIFXClient
from aifx_client.client import AIFXClient
from aifx_client.config import ClientConfig, RetryPolicy
from aifx_client.errors import (
    AIFXConnectionError,
    AIFXError,
    AIFXHTTPError,
    AIFXRequestError,
    AIFXResponseError,
    AIFXServerError,
    AIFXTimeout,
    MLDisabled,
)
from aifx_client.models import (
    BatchItem,
    Candle,
    CandlesResult,
    ComparedPrediction,
    Comparison,
    Experiment,
    ExperimentMetrics,
    Health,
    LegacyPrediction,
    ModelInfo,
    ModelsInfo,
    Outcome,
    Prediction,
    PredictRequest,
    SignalEvent,
    SwitchResult,
    TradeLevels,
    Variant,
    VariantMetrics,
    VersionSignal,
)
from aifx_client.sse import Reconnect
from aifx_client.stats import ClientStats

__all__ = [
    "AIFXClient",
    "AIFXConnectionError",
    "AIFXError",
    "AIFXHTTPError",
    "AIFXRequestError",
    "AIFXResponseError",
    "AIFXServerError",
    "AIFXTimeout",
    "AsyncAIFXClient",
    "BatchItem",
    "Candle",
    "CandlesResult",
    "ClientConfig",
    "ClientStats",
    "ComparedPrediction",
    "Comparison",
    "Experiment",
    "ExperimentMetrics",
    "Health",
    "LegacyPrediction",
    "MLDisabled",
    "ModelInfo",
    "ModelsInfo",
    "Outcome",
    "PredictRequest",
    "Prediction",
    "Reconnect",
    "RetryPolicy",
    "SignalEvent",
    "SwitchResult",
    "TradeLevels",
    "Variant",
    "VariantMetrics",
    "VersionSignal",
]
