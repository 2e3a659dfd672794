"""The ``flwr`` names this integration uses, imported in one place.

Importing this module without the extra raises :class:`~secagg.errors.MissingExtraError`
naming ``secagg[flower]``.
"""

from __future__ import annotations

from secagg._extras import require

require("flwr.app", "flower")

from flwr.app import (  # noqa: E402
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    RecordDict,
)
from flwr.common import (  # noqa: E402
    Code,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common.recorddict_compat import (  # noqa: E402
    arrayrecord_to_parameters,
    fitins_to_recorddict,
    parameters_to_arrayrecord,
    recorddict_to_fitins,
    recorddict_to_fitres,
)
from flwr.server.compat.legacy_context import LegacyContext  # noqa: E402
from flwr.server.workflow.constant import (  # noqa: E402
    MAIN_CONFIGS_RECORD,
    MAIN_PARAMS_RECORD,
)
from flwr.server.workflow.constant import Key as WorkflowKey  # noqa: E402
from flwr.serverapp.grid import Grid  # noqa: E402

__all__ = [
    "MAIN_CONFIGS_RECORD",
    "MAIN_PARAMS_RECORD",
    "ArrayRecord",
    "Code",
    "ConfigRecord",
    "Context",
    "Error",
    "Grid",
    "LegacyContext",
    "Message",
    "MessageType",
    "RecordDict",
    "WorkflowKey",
    "arrayrecord_to_parameters",
    "fitins_to_recorddict",
    "ndarrays_to_parameters",
    "parameters_to_arrayrecord",
    "parameters_to_ndarrays",
    "recorddict_to_fitins",
    "recorddict_to_fitres",
]
